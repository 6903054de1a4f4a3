"""Retry policy: bounded exponential backoff with jitter, and what counts as retriable."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
from pydantic import ValidationError

from sagakit.errors import SagakitError


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How a consumer retries a message whose handler raised a retriable error."""

    max_attempts: int = 5
    """Attempts in all, the first included; then the message is dead-lettered."""
    initial_delay: float = 0.05
    """Seconds before the second attempt."""
    backoff: float = 2.0
    """Each further delay is this many times the previous one."""
    max_delay: float = 2.0
    """Upper bound of one delay, in seconds."""
    jitter: float = 0.2
    """Each delay is randomly stretched or shrunk by up to this fraction."""

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        base = min(self.max_delay, self.initial_delay * self.backoff ** (attempt - 1))
        return max(0.0, base * (1 + self.jitter * (2 * rand() - 1)))


_PERMANENT_DB_ERRORS = (
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.DataError,
    asyncpg.SyntaxOrAccessError,
)


OUTAGES = (
    OSError,  # refused, reset, unreachable
    TimeoutError,  # pool acquire / connect timeouts
    asyncpg.InterfaceError,  # connection closed under us
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
)


def is_outage(exc: BaseException) -> bool:
    """The infrastructure failed, not the message: the runtime waits instead of counting an
    attempt against the message (which would dead-letter healthy messages in an outage)."""
    return isinstance(exc, OUTAGES)


def is_retriable(exc: BaseException) -> bool:
    """Our errors say so themselves; validation and constraint errors never heal; anything
    else (timeouts, lost connections, unexpected bugs) gets the bounded retries."""
    if isinstance(exc, SagakitError):
        return exc.retriable
    return not isinstance(exc, (ValidationError, *_PERMANENT_DB_ERRORS))
