"""sagakit: the Saga pattern for Python microservices over Kafka and PostgreSQL.

The public API: define sagas (:class:`SagaDefinition`, :class:`Step`, :class:`Action`,
:class:`StepKind`) and run them with the pure engine (:func:`start`, :func:`decide`);
handle messages reliably (:class:`Router`, :class:`MessageContext`, :class:`ConsumerRuntime`,
:class:`OutboxRelay`, :func:`new_message`); configure (:class:`Settings`); errors derive from
:class:`SagakitError`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sagakit.config import Settings
    from sagakit.errors import ConcurrencyConflict, MessageError, SagakitError, TransientError
    from sagakit.messaging import (
        ConsumerOptions,
        ConsumerRuntime,
        Envelope,
        MessageContext,
        OutboxRelay,
        RetryPolicy,
        Router,
        new_message,
    )
    from sagakit.saga import (
        Action,
        Command,
        Decision,
        Replied,
        SagaDefinition,
        SagaState,
        SagaStatus,
        Started,
        Step,
        StepKind,
        TimedOut,
        decide,
        start,
    )

# Resolved on first use, so that importing the pure core (sagakit.saga) never imports the
# database, broker or HTTP libraries.
_HOME = {
    "Settings": "sagakit.config",
    **dict.fromkeys(
        ("ConcurrencyConflict", "MessageError", "SagakitError", "TransientError"),
        "sagakit.errors",
    ),
    **dict.fromkeys(
        (
            "ConsumerOptions",
            "ConsumerRuntime",
            "Envelope",
            "MessageContext",
            "OutboxRelay",
            "RetryPolicy",
            "Router",
            "new_message",
        ),
        "sagakit.messaging",
    ),
    **dict.fromkeys(
        (
            "Action",
            "Command",
            "Decision",
            "Replied",
            "SagaDefinition",
            "SagaState",
            "SagaStatus",
            "Started",
            "Step",
            "StepKind",
            "TimedOut",
            "decide",
            "start",
        ),
        "sagakit.saga",
    ),
}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'sagakit' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__version__ = "0.1.0"

__all__ = [
    "Action",
    "Command",
    "ConcurrencyConflict",
    "ConsumerOptions",
    "ConsumerRuntime",
    "Decision",
    "Envelope",
    "MessageContext",
    "MessageError",
    "OutboxRelay",
    "Replied",
    "RetryPolicy",
    "Router",
    "SagaDefinition",
    "SagaState",
    "SagaStatus",
    "SagakitError",
    "Settings",
    "Started",
    "Step",
    "StepKind",
    "TimedOut",
    "TransientError",
    "__version__",
    "decide",
    "new_message",
    "start",
]
