"""How a saga is defined: ordered stages, each a step (or a :class:`Parallel` group of steps
run at once), each step a command with the replies that mean success or failure, the
compensation that undoes it, and its policy.

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Any

from sagakit.errors import MessageError


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
    failure: tuple[str, ...] = ()
    """For a compensation: reply types meaning it could not be done now (it is sent again,
    within the step's ``compensation_attempts``). A step's own failures are ``Step.failure``."""


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
    """Sends before giving up and compensating (RETRIABLE steps are re-sent without limit)."""
    compensation_attempts: int = 10
    """Sends of the compensation (each unanswered or failed one counts) before the saga
    stops in ``COMPENSATION_FAILED`` for an operator to retry or resolve."""


@dataclass(frozen=True, init=False)
class Parallel:
    """Steps sent at the same time; the group succeeds when every member has. If one fails
    or times out, the members that did (or may have) succeeded are compensated, then the
    stages before.

        Parallel("book_stay", Step("book_flight", ...), Step("book_hotel", ...))
    """

    name: str
    steps: tuple[Step, ...]

    def __init__(self, name: str, *steps: Step) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "steps", steps)


Stage = tuple[Step, ...]
"""Steps sent together: one, or the members of a :class:`Parallel` group."""


@dataclass(frozen=True)
class SagaDefinition:
    name: str
    steps: tuple[Step | Parallel, ...]
    """The stages in order: a step, or a :class:`Parallel` group of steps."""
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
    version: int = 1
    """Bump it when a change would confuse sagas already running: each saga keeps the
    version it started with, and a process hosts every version still in use."""

    def __post_init__(self) -> None:
        if not self.starts_on:
            object.__setattr__(self, "starts_on", f"{self.name}.start")
        if not self.steps:
            raise ValueError(f"{self.name}: a saga needs steps")
        groups = [g.name for g in self.steps if isinstance(g, Parallel)]
        names = [*(s.name for s in self.all_steps), *groups]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: step names repeat: {names}")
        for g in self.steps:
            if isinstance(g, Parallel) and (
                len(g.steps) < 2 or any(s.action is None for s in g.steps)
            ):
                raise ValueError(f"{self.name}.{g.name}: a group has 2+ steps, each an action")
        if any(s.action is None for s in self.all_steps[1:]):
            raise ValueError(f"{self.name}: only the first step may have no action")
        kinds = [{s.kind for s in stage} for stage in self.stages]
        if any(
            len(k) > 1 or (StepKind.PIVOT in k and len(st) > 1)
            for k, st in zip(kinds, self.stages, strict=True)
        ):
            raise ValueError(f"{self.name}: a group's steps share one kind, and not pivot")
        pivots = [i for i, k in enumerate(kinds) if StepKind.PIVOT in k]
        if len(pivots) > 1:
            raise ValueError(f"{self.name}: at most one pivot step")
        if pivots:
            if any(StepKind.RETRIABLE not in k for k in kinds[pivots[0] + 1 :]):
                raise ValueError(f"{self.name}: steps after the pivot must be retriable")
            if any(StepKind.COMPENSATABLE not in k for k in kinds[: pivots[0]]):
                raise ValueError(f"{self.name}: steps before the pivot must be compensatable")
        if self.version < 1:
            raise ValueError(f"{self.name}: version {self.version} must be >= 1")
        for s in self.all_steps:
            if s.kind is StepKind.PIVOT and s.compensation is None:
                raise ValueError(
                    f"{self.name}.{s.name}: a pivot needs a compensation (when it times out,"
                    " its outcome is unknown, and the saga turns back)"
                )
            if s.kind is StepKind.RETRIABLE and s.failure:
                raise ValueError(f"{self.name}.{s.name}: a retriable step cannot fail")
        types = list(self.reply_types)
        if len(set(types)) != len(types):
            raise ValueError(f"{self.name}: a reply type may belong to one step only")
        commands = self.command_types
        if len(set(commands)) != len(commands):
            raise ValueError(f"{self.name}: a command type may be sent by one action only")
        if self.starts_on in (*commands, *types):
            raise ValueError(
                f"{self.name}: {self.starts_on!r} starts the saga; it cannot be a step's"
            )

    @cached_property
    def stages(self) -> tuple[Stage, ...]:
        """The steps sent together, in order (a lone step is a stage of one)."""
        return tuple(s.steps if isinstance(s, Parallel) else (s,) for s in self.steps)

    @cached_property
    def all_steps(self) -> tuple[Step, ...]:
        """Every step, group members in place."""
        return tuple(s for stage in self.stages for s in stage)

    @cached_property
    def positions(self) -> dict[str, int]:
        """Each step's place in :attr:`all_steps`, by name."""
        return {s.name: i for i, s in enumerate(self.all_steps)}

    def step(self, name: str) -> Step:
        """The step called ``name``."""
        return self.all_steps[self.positions[name]]

    def stage_name(self, index: int) -> str:
        """The step's name, or the group's."""
        return self.steps[index].name if 0 <= index < len(self.steps) else f"#{index}"

    @staticmethod
    def _replies(step: Step) -> tuple[str, ...]:
        done = (step.action.done,) if step.action else ()
        comp = (step.compensation.done, *step.compensation.failure) if step.compensation else ()
        return (*done, *step.failure, *comp)

    @property
    def reply_types(self) -> tuple[str, ...]:
        return tuple(t for s in self.all_steps for t in self._replies(s))

    @property
    def command_types(self) -> tuple[str, ...]:
        out = []
        for s in self.all_steps:
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
        for s in self.all_steps:
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
        failures = step.failure if action is step.action else action.failure
        return (action.done, *failures)

    def reply_model(self, reply: str) -> type[Any] | None:
        """The payload model of reply type ``reply``, if its action declares one."""
        found = self.reply_of(reply)
        return found[1].reply if found else None

    def reply_of(self, reply: str) -> tuple[Step, Action, str] | None:
        """The step and action that ``reply`` answers, and what it means: ``done``,
        ``failed`` (the step refused), ``undone`` or ``undo_failed`` (its compensation)."""
        for s in self.all_steps:
            if s.action is not None and reply == s.action.done:
                return s, s.action, "done"
            if s.action is not None and reply in s.failure:
                return s, s.action, "failed"
            if s.compensation is not None and reply == s.compensation.done:
                return s, s.compensation, "undone"
            if s.compensation is not None and reply in s.compensation.failure:
                return s, s.compensation, "undo_failed"
        return None

    @property
    def pivot(self) -> int | None:
        """The index of the pivot's stage, if there is one."""
        return next((i for i, st in enumerate(self.stages) if st[0].kind is StepKind.PIVOT), None)


def newest(definitions: Sequence[SagaDefinition]) -> dict[str, SagaDefinition]:
    """The newest version of each definition, by name: what new sagas start on."""
    out: dict[str, SagaDefinition] = {}
    for d in sorted(definitions, key=lambda d: d.version):
        out[d.name] = d
    return out


def hosted(
    definitions: Mapping[tuple[str, int], SagaDefinition], name: str, version: int
) -> SagaDefinition:
    """Version ``version`` of ``name`` among ``definitions`` (keyed by name and version);
    :class:`MessageError` saying which versions are hosted when it is not."""
    found = definitions.get((name, version))
    if found is None:
        versions = ", ".join(f"v{v}" for n, v in sorted(definitions) if n == name) or "none"
        raise MessageError(
            f"saga definition {name!r} v{version} is not hosted here (versions hosted: {versions})"
        )
    return found


def check_payload(d: SagaDefinition, type: str, payload: Mapping[str, Any]) -> None:
    """Raise :class:`MessageError` (dead-lettered, never steering a saga) naming ``type``
    when ``payload`` does not fit its model (the start's ``data``, or ``Action.reply``)."""
    model = d.data if type == d.starts_on else d.reply_model(type)
    if model is None:
        return
    try:
        model.model_validate(payload)
    except ValueError as exc:
        raise MessageError(f"{type}: invalid payload for {d.name}: {exc}") from None
