"""sagakit: the Saga pattern for Python microservices over Kafka and PostgreSQL.

The public API (docs/api.md): define sagas (:class:`SagaDefinition`, :class:`Step`,
:class:`Action`, :class:`StepKind`); host them and their participants in services
(:class:`Service`, :class:`Runtime`, :class:`Mode`); start one from application code
(:func:`start_saga`); handle and send messages (:class:`MessageContext`, :class:`Router`,
:func:`new_message`, :func:`publish`); the pure engine (:func:`start`, :func:`decide`);
configuration (:class:`Settings`); errors derive from :class:`SagakitError`. Also public:
:mod:`sagakit.http` (HTTP edge types) and :mod:`sagakit.dev` (local stack and fleets).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sagakit.config import Settings
    from sagakit.db import Connection, MigrationSet
    from sagakit.errors import (
        ConcurrencyConflict,
        ConfigError,
        MessageError,
        SagakitError,
        TransientError,
    )
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
    from sagakit.messaging.outbox import add as publish
    from sagakit.runtime import ContractError, Mode, Service, check_system, start_saga
    from sagakit.runtime.host import Runtime
    from sagakit.saga import (
        Action,
        Command,
        Decision,
        Parallel,
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
    from sagakit.topics import topic_name

# Resolved on first use, so that importing the pure core (sagakit.saga) never imports the
# database, broker or HTTP libraries.
_HOME = {
    "Settings": "sagakit.config",
    "Connection": "sagakit.db",
    "MigrationSet": "sagakit.db",
    "publish": "sagakit.messaging.outbox:add",
    "Runtime": "sagakit.runtime.host",
    "topic_name": "sagakit.topics",
    **dict.fromkeys(
        ("ContractError", "Mode", "Service", "check_system", "start_saga"), "sagakit.runtime"
    ),
    **dict.fromkeys(
        ("ConcurrencyConflict", "ConfigError", "MessageError", "SagakitError", "TransientError"),
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
            "Parallel",
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
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'sagakit' has no attribute {name!r}")
    module, _, attr = home.partition(":")
    return getattr(importlib.import_module(module), attr or name)


__version__ = "0.1.0"

__all__ = [
    "Action",
    "Command",
    "ConcurrencyConflict",
    "ConfigError",
    "Connection",
    "ConsumerOptions",
    "ConsumerRuntime",
    "ContractError",
    "Decision",
    "Envelope",
    "MessageContext",
    "MessageError",
    "MigrationSet",
    "Mode",
    "OutboxRelay",
    "Parallel",
    "Replied",
    "RetryPolicy",
    "Router",
    "Runtime",
    "SagaDefinition",
    "SagaState",
    "SagaStatus",
    "SagakitError",
    "Service",
    "Settings",
    "Started",
    "Step",
    "StepKind",
    "TimedOut",
    "TransientError",
    "__version__",
    "check_system",
    "decide",
    "new_message",
    "publish",
    "start",
    "start_saga",
    "topic_name",
]
