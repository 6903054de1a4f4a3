"""The state of one saga instance: a plain value the engine maps to the next one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any


class SagaStatus(StrEnum):
    RUNNING = "RUNNING"
    COMPENSATING = "COMPENSATING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    """Compensated: every completed step was undone."""

    @property
    def terminal(self) -> bool:
        return self in (SagaStatus.COMPLETED, SagaStatus.FAILED)


@dataclass(frozen=True)
class SagaState:
    saga_id: str
    definition: str
    status: SagaStatus
    step: int
    """Index of the step whose reply is awaited (running) or that is being undone."""
    attempt: int = 1
    """Sends of the current command so far."""
    data: Mapping[str, Any] = field(default_factory=dict)
    """Saga data: the start payload, merged with every success reply's payload."""
    reason: str | None = None
    """Why the saga compensates."""
    started_at: float = 0.0
    due_at: float | None = None
    """When to re-send the current command if no reply came (epoch seconds)."""
    version: int = 0
    """Optimistic concurrency: bumped by every stored transition."""

    def evolve(self, **changes: Any) -> SagaState:
        return replace(self, **changes)
