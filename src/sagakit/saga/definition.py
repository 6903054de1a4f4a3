"""How a saga is defined: ordered steps, each a command with the replies that mean success or
failure, the compensation that undoes it, and its policy.

    TRIP = SagaDefinition(
        name="trip",
        steps=(
            Step("book_flight", Action("flight.book", "flight.booked"),
                 failure=("flight.unavailable",),
                 compensation=Action("flight.cancel", "flight.cancelled")),
            ...
        ),
    )
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class StepKind(StrEnum):
    COMPENSATABLE = "compensatable"
    """Can fail; undone by its compensation if a later step fails."""
    PIVOT = "pivot"
    """The point of no return: once it succeeds, the saga only goes forward."""
    RETRIABLE = "retriable"
    """After the pivot: cannot fail, is re-sent until it succeeds."""


@dataclass(frozen=True)
class Action:
    """A command and the reply that acknowledges it, with the payload models of both."""

    command: str
    """Message type sent, e.g. ``flight.book``."""
    done: str
    """Reply type meaning success, e.g. ``flight.booked``."""
    payload: type[Any] | None = None
    """Pydantic model of the command's payload: the handler of the command receives it
    (the saga's data: ``saga_id``, the start data and what earlier replies added)."""
    reply: type[Any] | None = None
    """Pydantic model of its replies (success, and the step's failures): a reply that does
    not fit is dead-lettered instead of steering the saga."""


@dataclass(frozen=True)
class Step:
    name: str
    action: Action | None = None
    """What the step asks a participant to do. None: the local transaction that started the
    saga (only the first step), already done when the saga begins."""
    failure: tuple[str, ...] = ()
    """Reply types meaning the participant refused (nothing was changed)."""
    compensation: Action | None = None
    """What undoes the step. Must be idempotent and safe when there is nothing to undo."""
    kind: StepKind = StepKind.COMPENSATABLE
    timeout: float = 5.0
    """Seconds to wait for a reply before re-sending the command."""
    max_attempts: int = 3
    """Sends before giving up and compensating (RETRIABLE steps and compensations are re-sent
    without limit)."""


@dataclass(frozen=True)
class SagaDefinition:
    name: str
    steps: tuple[Step, ...]
    deadline: float = 60.0
    """Seconds a saga may take before the pivot; past it, it compensates."""
    compensation_timeout: float = 5.0
    """Seconds between re-sends of an unacknowledged compensation."""
    data: type[Any] | None = None
    """Pydantic model of the data a saga starts with: a start that does not fit is refused
    (HTTP 422, or dead-lettered) instead of starting a saga no participant can serve."""
    starts_on: str = ""
    """Message type that starts a saga (its key or correlation id is the saga id); default
    ``<name>.start``."""

    def __post_init__(self) -> None:
        if not self.starts_on:
            object.__setattr__(self, "starts_on", f"{self.name}.start")
        names = [s.name for s in self.steps]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: step names repeat: {names}")
        if not self.steps:
            raise ValueError(f"{self.name}: a saga needs steps")
        if any(s.action is None for s in self.steps[1:]):
            raise ValueError(f"{self.name}: only the first step may have no action")
        pivots = [i for i, s in enumerate(self.steps) if s.kind is StepKind.PIVOT]
        if len(pivots) > 1:
            raise ValueError(f"{self.name}: at most one pivot step")
        if pivots:
            after = self.steps[pivots[0] + 1 :]
            if any(s.kind is not StepKind.RETRIABLE for s in after):
                raise ValueError(f"{self.name}: steps after the pivot must be retriable")
            before = self.steps[: pivots[0]]
            if any(s.kind is not StepKind.COMPENSATABLE for s in before):
                raise ValueError(f"{self.name}: steps before the pivot must be compensatable")
        for s in self.steps:
            if s.kind is StepKind.RETRIABLE and s.failure:
                raise ValueError(f"{self.name}.{s.name}: a retriable step cannot fail")
        types = [t for s in self.steps for t in self._replies(s)]
        if len(set(types)) != len(types):
            raise ValueError(f"{self.name}: a reply type may belong to one step only")
        commands = self.command_types
        if len(set(commands)) != len(commands):
            raise ValueError(f"{self.name}: a command type may be sent by one action only")
        if self.starts_on in (*commands, *types):
            raise ValueError(
                f"{self.name}: {self.starts_on!r} starts the saga; it cannot be a step's"
            )

    @staticmethod
    def _replies(step: Step) -> tuple[str, ...]:
        done = (step.action.done,) if step.action else ()
        comp = (step.compensation.done,) if step.compensation else ()
        return (*done, *step.failure, *comp)

    @property
    def reply_types(self) -> tuple[str, ...]:
        return tuple(t for s in self.steps for t in self._replies(s))

    @property
    def command_types(self) -> tuple[str, ...]:
        out = []
        for s in self.steps:
            if s.action:
                out.append(s.action.command)
            if s.compensation:
                out.append(s.compensation.command)
        return tuple(out)

    @property
    def message_types(self) -> tuple[str, ...]:
        """Every message type a saga of this definition sends or receives (one topic each)."""
        return tuple(dict.fromkeys((self.starts_on, *self.command_types, *self.reply_types)))

    def action_for(self, command: str) -> tuple[Step, Action] | None:
        """The step and action (or compensation) that sends ``command``."""
        for s in self.steps:
            for action in (s.action, s.compensation):
                if action is not None and action.command == command:
                    return s, action
        return None

    def replies_to(self, command: str) -> tuple[str, ...]:
        """The reply types that answer ``command``: success, and the step's failures when
        it is the step's action."""
        found = self.action_for(command)
        if found is None:
            return ()
        step, action = found
        return (action.done, *step.failure) if action is step.action else (action.done,)

    def reply_model(self, reply: str) -> type[Any] | None:
        """The payload model of reply type ``reply``, if its action declares one."""
        for s in self.steps:
            if s.action is not None and reply in (s.action.done, *s.failure):
                return s.action.reply
            if s.compensation is not None and reply == s.compensation.done:
                return s.compensation.reply
        return None

    @property
    def pivot(self) -> int | None:
        return next((i for i, s in enumerate(self.steps) if s.kind is StepKind.PIVOT), None)
