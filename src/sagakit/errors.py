"""One error taxonomy: every sagakit error derives from :class:`SagakitError`.

The ``retriable`` flag decides what a consumer does with a failing message: a retriable
error is retried with backoff, a non-retriable one goes straight to the dead-letter topic.
"""

from __future__ import annotations


class SagakitError(Exception):
    """Root of every error sagakit raises on purpose."""

    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable


class ConfigError(SagakitError):
    """A setting is missing or malformed."""


class StackError(SagakitError):
    """Part of the development stack did not come up or go down."""


class MessageError(SagakitError):
    """A message cannot be decoded or validated: retrying will not help."""


class TransientError(SagakitError):
    """A failure that may pass on its own (a timeout, a lost connection)."""

    retriable = True


class ConcurrencyConflict(TransientError):
    """Someone else changed the row first (optimistic concurrency)."""


class DatabaseUnavailable(TransientError):
    """No usable database connection could be had (the server is down, restarting, out of
    connections, or the pool is exhausted). An outage, not the message's fault: consumers
    wait it out instead of spending the message's attempts."""
