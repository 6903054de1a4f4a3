from __future__ import annotations

import asyncpg
from pydantic import BaseModel, ValidationError

from sagakit.errors import ConcurrencyConflict, MessageError, SagakitError
from sagakit.messaging.retry import RetryPolicy, is_outage, is_retriable


def test_backoff_grows_and_is_bounded() -> None:
    policy = RetryPolicy(initial_delay=0.1, backoff=2, max_delay=1.0, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.1, 0.2, 0.4, 0.8, 1.0]


def test_jitter_stays_within_its_fraction() -> None:
    policy = RetryPolicy(initial_delay=1.0, jitter=0.2, max_delay=10)
    assert policy.delay(1, rand=lambda: 0.0) == 0.8
    assert policy.delay(1, rand=lambda: 1.0) == 1.2


def test_classification() -> None:
    class M(BaseModel):
        x: int

    try:
        M.model_validate({"x": "no"})
    except ValidationError as exc:
        validation = exc
    assert not is_retriable(MessageError("bad"))
    assert not is_retriable(validation)
    assert not is_retriable(asyncpg.CheckViolationError("check"))
    assert is_retriable(asyncpg.UniqueViolationError("a race between replicas"))
    assert is_retriable(ConcurrencyConflict("race"))
    assert is_retriable(SagakitError("x", retriable=True))
    assert is_retriable(ConnectionResetError())
    assert is_retriable(asyncpg.DeadlockDetectedError("deadlock"))


def test_outages_are_not_the_message_fault() -> None:
    assert is_outage(ConnectionRefusedError())
    assert not is_outage(TimeoutError()), "a command timeout: retried, not waited out"
    assert is_outage(asyncpg.CannotConnectNowError("starting up"))
    assert is_outage(asyncpg.ConnectionDoesNotExistError("gone"))
    assert not is_outage(asyncpg.UniqueViolationError("dup"))
    assert not is_outage(asyncpg.CheckViolationError("check"))
    assert not is_outage(ConcurrencyConflict("race"))
    assert not is_outage(ValueError("bug"))
