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
    COMPENSATION_FAILED = "COMPENSATION_FAILED"
    """A compensation ran out of attempts: the saga waits for an operator (retry, or
    resolve with a note). Nothing is sent meanwhile."""

    @property
    def terminal(self) -> bool:
        return self in (SagaStatus.COMPLETED, SagaStatus.FAILED)


class Progress(StrEnum):
    """Where one step of the current stage is."""

    SENT = "sent"
    """Its command is out; its reply is awaited."""
    DONE = "done"
    FAILED = "failed"
    """It refused: nothing to undo."""
    UNDOING = "undoing"
    """Its compensation is out."""
    UNDONE = "undone"
    STUCK = "stuck"
    """Its compensation ran out of attempts."""

    @property
    def in_flight(self) -> bool:
        return self in (Progress.SENT, Progress.UNDOING)


@dataclass(frozen=True)
class Member:
    """One step of the current stage."""

    progress: Progress
    attempt: int = 1
    """Sends of its current command so far: each send has its own message id."""
    tries: int = 1
    """Sends counted against its budget (an operator's retry starts a new count)."""
    due_at: float | None = None
    """When to send again (or give up) if no reply came (epoch seconds)."""
    sent_at: float | None = None
    """When its current command was sent (epoch seconds; the time of the event that sent
    it): a reply's latency is measured from it."""

    def to_json(self) -> dict[str, Any]:
        return {
            "progress": self.progress.value,
            "attempt": self.attempt,
            "tries": self.tries,
            "due_at": self.due_at,
            "sent_at": self.sent_at,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Member:
        return cls(
            Progress(raw["progress"]),
            raw["attempt"],
            raw["tries"],
            raw["due_at"],
            raw.get("sent_at"),
        )


@dataclass(frozen=True)
class SagaState:
    saga_id: str
    definition: str
    status: SagaStatus
    step: int
    """Index of the stage (a step, or a group of steps) running or being undone."""
    members: Mapping[str, Member] = field(default_factory=dict)
    """The steps of that stage by name, and where each is."""
    data: Mapping[str, Any] = field(default_factory=dict)
    """Saga data: the start payload, merged with every success reply's payload."""
    reason: str | None = None
    """Why the saga compensates."""
    started_at: float = 0.0
    version: int = 0
    """Optimistic concurrency: bumped by every stored transition."""
    definition_version: int = 1
    """The version of the definition the saga started with (and keeps)."""

    @property
    def due_at(self) -> float | None:
        """The earliest timer of the stage's steps."""
        dues = [m.due_at for m in self.members.values() if m.due_at is not None]
        return min(dues) if dues else None

    @property
    def attempt(self) -> int:
        """The most sends of any of the stage's current commands."""
        return max((m.attempt for m in self.members.values()), default=1)

    def evolve(self, **changes: Any) -> SagaState:
        return replace(self, **changes)
