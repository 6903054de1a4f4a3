"""Retry policy (bounded exponential backoff with jitter) and the one classification of
errors that every consumer, relay and loop acts on.

:func:`classify` answers one question: whose fault is this failure, and can time fix it?

- ``OUTAGE``: the infrastructure, not the message. Wait, without spending the message's
  attempts: dead-lettering healthy messages because the database restarted loses them to an
  operator's replay queue for nothing.
- ``RETRY``: the message's attempt failed for a reason that may pass (a race with another
  replica, a deadlock, a timeout, an unexpected bug). Retry with backoff, counted against the
  retry budget, so that a failure that does not pass ends in the dead-letter topic.
- ``PERMANENT``: the same input will fail the same way (invalid data, a broken constraint,
  a bad statement). Dead-letter at once.

PostgreSQL errors are decided by SQLSTATE (exact code first, then its two-character class),
which is what the server promises to keep stable; asyncpg's exception classes mirror it.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import asyncpg
from pydantic import ValidationError

from sagakit.errors import DatabaseUnavailable, SagakitError


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


class Disposition(Enum):
    """What to do with a failed attempt; see the module docstring."""

    OUTAGE = "outage"
    RETRY = "retry"
    PERMANENT = "permanent"


OUTAGE, RETRY, PERMANENT = Disposition.OUTAGE, Disposition.RETRY, Disposition.PERMANENT

_BY_SQLSTATE: dict[str, Disposition] = {
    # Outages: the server is going away, is away, or is not the primary any more.
    "25006": OUTAGE,  # read-only transaction: we were failed over to a standby
    "57P01": OUTAGE,  # admin shutdown (also pg_terminate_backend)
    "57P02": OUTAGE,  # crash shutdown: another backend crashed, the server restarts
    "57P03": OUTAGE,  # cannot connect now: starting up, shutting down, recovering
    "57P04": OUTAGE,  # database dropped
    "57P05": OUTAGE,  # idle session timeout: the server closed our session
    "3D000": OUTAGE,  # database missing: an operator's matter, not the message's
    "58000": OUTAGE,  # system error
    "58030": OUTAGE,  # I/O error on the server
    # Races and interruptions: another attempt may well pass.
    "23505": RETRY,  # unique violation: two replicas inserted the same key at once
    "23P01": RETRY,  # exclusion violation: the same race on an exclusion constraint
    "55P03": RETRY,  # lock not available (NOWAIT, lock_timeout)
    "55006": RETRY,  # object in use
    "57014": OUTAGE,  # query canceled (statement_timeout under load, an admin): not the message
}

_BY_CLASS: dict[str, Disposition] = {
    "08": OUTAGE,  # connection exceptions
    "28": OUTAGE,  # invalid authorization (a rotated password): waits for an operator
    "53": OUTAGE,  # insufficient resources: too many connections, out of memory, disk full
    "40": RETRY,  # transaction rollback: serialization failure, deadlock
    "XX": RETRY,  # internal error
    "22": PERMANENT,  # data exception: bad encoding (a NUL), out of range, invalid text
    "23": PERMANENT,  # integrity: not-null, foreign key, check (23505 and 23P01 excepted)
    "42": PERMANENT,  # syntax error or access rule violation
    "54": PERMANENT,  # program limit exceeded: the same input meets the same limit
}

OUTAGES: tuple[type[Exception], ...] = (
    DatabaseUnavailable,
    ConnectionError,  # refused, reset, aborted, broken pipe
    socket.gaierror,  # the server's name does not resolve (yet)
    asyncpg.PostgresConnectionError,  # 08xxx, ConnectionDoesNotExistError among them
    asyncpg.InsufficientResourcesError,  # 53xxx
    asyncpg.ReadOnlySQLTransactionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.InvalidAuthorizationSpecificationError,
)
"""Exception types that are outages whatever the instance, for dispatch by type (HTTP
exception handlers). :func:`classify` is the authority and covers more: a plain ``OSError``
(unreachable host, "Multiple exceptions") is an outage too, but ``OSError`` cannot be listed
here because ``TimeoutError`` derives from it, and a timeout is not an outage."""


def classify(exc: BaseException) -> Disposition:
    """The one classification: OUTAGE, RETRY or PERMANENT for a failed attempt."""
    if isinstance(exc, DatabaseUnavailable):
        return OUTAGE
    if isinstance(exc, SagakitError):
        return RETRY if exc.retriable else PERMANENT
    if isinstance(exc, ValidationError):
        return PERMANENT
    if isinstance(exc, asyncpg.PostgresError):
        return _by_sqlstate(getattr(exc, "sqlstate", None))
    if isinstance(exc, asyncpg.InterfaceError):
        return _interface(exc)
    if isinstance(exc, TimeoutError):
        # asyncpg's per-command timeout: the server is there, this statement was slow.
        # (Checked before OSError, from which TimeoutError derives.)
        return RETRY
    if isinstance(exc, OSError):
        return OUTAGE
    return RETRY


def _by_sqlstate(sqlstate: str | None) -> Disposition:
    if not sqlstate:
        return RETRY
    return _BY_SQLSTATE.get(sqlstate) or _BY_CLASS.get(sqlstate[:2], RETRY)


def _interface(exc: asyncpg.InterfaceError) -> Disposition:
    """asyncpg's client-side errors. Most are misuse of the API (a bug: bounded retries, so
    that it ends in the dead-letter topic rather than being waited on for ever). A closed
    connection or pool, and connection settings asyncpg rejects, are not the message's
    fault: outages. (A query argument asyncpg cannot encode comes as a 22000 PostgresError.)
    """
    if isinstance(exc, asyncpg.ClientConfigurationError):
        return OUTAGE
    text = str(exc)
    if "is closed" in text or "is closing" in text:
        return OUTAGE
    return RETRY


def is_outage(exc: BaseException) -> bool:
    """The infrastructure failed, not the message: wait instead of counting an attempt
    against the message (which would dead-letter healthy messages in an outage)."""
    return classify(exc) is OUTAGE


def is_retriable(exc: BaseException) -> bool:
    """Whether another attempt may pass (outages included): False only for PERMANENT."""
    return classify(exc) is not PERMANENT
