"""The classification of failures that need no database to produce, and URL redaction.
What PostgreSQL itself raises is classified in tests/integration/test_error_classes.py."""

from __future__ import annotations

import socket

import asyncpg
import pytest
from pydantic import BaseModel, ValidationError

from sagakit.db import redact
from sagakit.errors import (
    ConcurrencyConflict,
    ConfigError,
    DatabaseUnavailable,
    MessageError,
    SagakitError,
    StackError,
    TransientError,
)
from sagakit.messaging.retry import OUTAGES, Disposition, classify, is_outage, is_retriable

OUTAGE, RETRY, PERMANENT = Disposition.OUTAGE, Disposition.RETRY, Disposition.PERMANENT


def _validation_error() -> ValidationError:
    class Model(BaseModel):
        x: int

    try:
        Model.model_validate({"x": "no"})
    except ValidationError as exc:
        return exc
    raise AssertionError("validation passed")


CASES: list[tuple[str, BaseException, Disposition]] = [
    ("database unavailable", DatabaseUnavailable("no connection"), OUTAGE),
    ("transient", TransientError("flaky"), RETRY),
    ("concurrency conflict", ConcurrencyConflict("race"), RETRY),
    ("sagakit, retriable", SagakitError("x", retriable=True), RETRY),
    ("sagakit, not retriable", SagakitError("x"), PERMANENT),
    ("message error", MessageError("bad"), PERMANENT),
    ("config error", ConfigError("bad"), PERMANENT),
    ("stack error", StackError("bad"), PERMANENT),
    ("transient made permanent", TransientError("x", retriable=False), PERMANENT),
    ("pydantic validation", _validation_error(), PERMANENT),
    ("connection refused", ConnectionRefusedError(111, "refused"), OUTAGE),
    ("connection reset", ConnectionResetError(), OUTAGE),
    ("broken pipe", BrokenPipeError(), OUTAGE),
    ("unreachable host", OSError(113, "No route to host"), OUTAGE),
    ("name not resolved", socket.gaierror(-2, "Name or service not known"), OUTAGE),
    # asyncpg's command timeout; asyncio.TimeoutError and socket.timeout are this class too.
    ("timeout", TimeoutError(), RETRY),
    ("interface: connection closed", asyncpg.InterfaceError("connection is closed"), OUTAGE),
    ("interface: pool closing", asyncpg.InterfaceError("pool is closing"), OUTAGE),
    (
        "interface: misuse",
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        RETRY,
    ),
    (
        "interface: connection settings rejected",
        asyncpg.ClientConfigurationError("invalid sslmode"),
        OUTAGE,
    ),
    ("postgres error without SQLSTATE", asyncpg.exceptions.UnknownPostgresError("?"), RETRY),
    ("connection lost mid-operation", asyncpg.ConnectionDoesNotExistError("gone"), OUTAGE),
    ("value error (a bug)", ValueError("bug"), RETRY),
    ("key error (a bug)", KeyError("bug"), RETRY),
    ("runtime error", RuntimeError("bug"), RETRY),
]


@pytest.mark.parametrize(("exc", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_classify(exc: BaseException, expected: Disposition) -> None:
    assert classify(exc) is expected
    assert is_outage(exc) is (expected is OUTAGE)
    assert is_retriable(exc) is (expected is not PERMANENT)


def test_every_listed_outage_type_classifies_as_an_outage() -> None:
    """OUTAGES serves dispatch by type (HTTP handlers); it must not disagree with classify."""
    for kind in OUTAGES:
        exc = kind("x") if issubclass(kind, Exception) else kind()
        assert classify(exc) is OUTAGE, kind
    assert TimeoutError not in OUTAGES
    assert not isinstance(TimeoutError(), OUTAGES)


REDACTIONS = [
    ("postgresql://postgres@127.0.0.1:5432/postgres", None),
    ("postgresql://127.0.0.1/app", None),
    ("postgresql://u:s3cret@db:5432/app", "postgresql://u:***@db:5432/app"),
    ("postgres://u:s3cret@db/app?sslmode=require", "postgres://u:***@db/app?sslmode=require"),
    ("postgresql://u:p@ss/w0rd@db/app", "postgresql://u:***@db/app"),
    ("postgresql://u:s3cret@h1:5432,h2:5433/app", "postgresql://u:***@h1:5432,h2:5433/app"),
    (
        "postgresql://u@db/app?password=s3cret&sslmode=require",
        "postgresql://u@db/app?password=***&sslmode=require",
    ),
    (
        "postgresql://db/app?sslmode=verify-full&sslpassword=s3cret",
        "postgresql://db/app?sslmode=verify-full&sslpassword=***",
    ),
    ("postgresql://u:@db/app", None),
    ("no URL at all", None),
]


@pytest.mark.parametrize(("url", "expected"), REDACTIONS)
def test_redact(url: str, expected: str | None) -> None:
    assert redact(url) == (url if expected is None else expected)
    assert "s3cret" not in redact(url)
    assert "w0rd" not in redact(url)
