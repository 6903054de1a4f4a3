"""The saga framework: definitions, state, and the pure engine that decides transitions."""

from sagakit.saga.definition import Action, Parallel, SagaDefinition, Step, StepKind
from sagakit.saga.engine import (
    Cancelled,
    Command,
    Decision,
    Replied,
    Resolved,
    Resumed,
    Started,
    TimedOut,
    decide,
    start,
)
from sagakit.saga.state import SagaState, SagaStatus

__all__ = [
    "Action",
    "Cancelled",
    "Command",
    "Decision",
    "Parallel",
    "Replied",
    "Resolved",
    "Resumed",
    "SagaDefinition",
    "SagaState",
    "SagaStatus",
    "Started",
    "Step",
    "StepKind",
    "TimedOut",
    "decide",
    "start",
]
