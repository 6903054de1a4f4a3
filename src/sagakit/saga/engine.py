"""The saga engine: ``start`` and ``decide(definition, state, event) -> Decision``.
Pure: no clock (time comes in the event), no I/O.

Events are a start, a reply, or a timer firing. A reply that the current state does not
expect (a duplicate, a late reply from an earlier step, a reply to a re-sent command that
was already answered) changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sagakit.saga.definition import SagaDefinition, Step, StepKind
from sagakit.saga.state import SagaState, SagaStatus


@dataclass(frozen=True)
class Started:
    saga_id: str
    data: Mapping[str, Any]
    now: float


@dataclass(frozen=True)
class Replied:
    type: str
    payload: Mapping[str, Any]
    now: float


@dataclass(frozen=True)
class TimedOut:
    now: float


@dataclass(frozen=True)
class Resumed:
    """An operator takes back a saga that was set aside: the step it is at is sent again,
    as a new attempt, whatever its budget (the deadline still counts from the start)."""

    now: float


Event = Replied | TimedOut | Resumed


@dataclass(frozen=True)
class Command:
    """A message for a participant. ``attempt`` lets the sender derive a stable message id."""

    type: str
    payload: Mapping[str, Any]
    step: str
    attempt: int


@dataclass(frozen=True)
class Decision:
    state: SagaState
    commands: tuple[Command, ...] = ()
    changed: bool = True
    """False when the event was ignored (nothing to store)."""
    note: str = ""
    """What happened, for the saga log."""


def _payload(state: SagaState) -> dict[str, Any]:
    body = {"saga_id": state.saga_id, **state.data}
    if state.reason is not None:
        body["reason"] = state.reason
    return body


RESEND_BACKOFF_CAP = 8
"""A re-sent command waits its timeout times 2 ** (attempt - 1), at most this many times:
when replies are slow because the system is overloaded, re-sending at a fixed pace would
add to the load that made them slow."""


def _wait(timeout: float, attempt: int) -> float:
    return timeout * min(1 << max(attempt - 1, 0), RESEND_BACKOFF_CAP)


def _send_forward(d: SagaDefinition, state: SagaState, now: float) -> Decision:
    step = d.steps[state.step]
    assert step.action is not None
    cmd = Command(step.action.command, _payload(state), step.name, state.attempt)
    return Decision(state.evolve(due_at=now + _wait(step.timeout, state.attempt)), (cmd,))


def _send_compensation(d: SagaDefinition, state: SagaState, now: float) -> Decision:
    step = d.steps[state.step]
    assert step.compensation is not None
    cmd = Command(step.compensation.command, _payload(state), step.name, state.attempt)
    due = now + _wait(d.compensation_timeout, state.attempt)
    return Decision(state.evolve(due_at=due), (cmd,))


def _compensate_from(
    d: SagaDefinition, state: SagaState, index: int, reason: str, now: float
) -> Decision:
    """Undo steps ``index``, ``index-1``, ... 0, skipping steps with nothing to undo."""
    while index >= 0 and d.steps[index].compensation is None:
        index -= 1
    if index < 0:
        done = state.evolve(status=SagaStatus.FAILED, reason=reason, due_at=None, step=0)
        return Decision(done, note=f"failed: {reason}")
    comp = state.evolve(status=SagaStatus.COMPENSATING, step=index, attempt=1, reason=reason)
    decision = _send_compensation(d, comp, now)
    return Decision(decision.state, decision.commands, note=f"compensating: {reason}")


def _advance(d: SagaDefinition, state: SagaState, now: float) -> Decision:
    nxt = state.step + 1
    if nxt >= len(d.steps):
        done = state.evolve(status=SagaStatus.COMPLETED, step=len(d.steps) - 1, due_at=None)
        return Decision(done, note="completed")
    decision = _send_forward(d, state.evolve(step=nxt, attempt=1), now)
    return Decision(decision.state, decision.commands, note=f"-> {d.steps[nxt].name}")


def _past_pivot(d: SagaDefinition, state: SagaState) -> bool:
    pivot = d.pivot
    return pivot is not None and state.step > pivot


def start(d: SagaDefinition, event: Started) -> Decision:
    """A new saga: its first step (after the local one that started it) is sent."""
    first = 1 if d.steps[0].action is None else 0
    fresh = SagaState(
        saga_id=event.saga_id,
        definition=d.name,
        status=SagaStatus.RUNNING,
        step=first - 1,
        data=dict(event.data),
        started_at=event.now,
    )
    return _advance(d, fresh, event.now)


def decide(d: SagaDefinition, state: SagaState, event: Event) -> Decision:
    """The next state and the commands to send, for a reply or a timer firing."""
    if state.status.terminal:
        return Decision(state, changed=False, note=f"saga is {state.status}")
    if isinstance(event, Replied):
        return _on_reply(d, state, event)
    if isinstance(event, Resumed):
        return _on_resume(d, state, event.now)
    return _on_timeout(d, state, event.now)


def _on_resume(d: SagaDefinition, state: SagaState, now: float) -> Decision:
    step = d.steps[state.step]
    again = state.evolve(attempt=state.attempt + 1)
    if state.status is SagaStatus.COMPENSATING:
        sent = _send_compensation(d, again, now)
        return Decision(
            sent.state, sent.commands, note=f"resumed: re-sent {step.name} compensation"
        )
    sent = _send_forward(d, again, now)
    return Decision(sent.state, sent.commands, note=f"resumed: re-sent {step.name}")


def _on_reply(d: SagaDefinition, state: SagaState, event: Replied) -> Decision:
    step: Step = d.steps[state.step]
    if state.status is SagaStatus.RUNNING and step.action is not None:
        if event.type == step.action.done:
            merged = state.evolve(data={**state.data, **_data_of(event.payload)})
            return _advance(d, merged, event.now)
        if event.type in step.failure:
            reason = str(event.payload.get("reason") or event.type)
            return _compensate_from(d, state, state.step - 1, reason, event.now)
    if (
        state.status is SagaStatus.COMPENSATING
        and step.compensation is not None
        and event.type == step.compensation.done
    ):
        return _compensate_from(d, state, state.step - 1, state.reason or "", event.now)
    return Decision(state, changed=False, note=f"ignored {event.type}")


def _on_timeout(d: SagaDefinition, state: SagaState, now: float) -> Decision:
    if state.due_at is None or now < state.due_at:
        return Decision(state, changed=False, note="not due")
    step = d.steps[state.step]
    if state.status is SagaStatus.COMPENSATING:
        again = _send_compensation(d, state.evolve(attempt=state.attempt + 1), now)
        return Decision(again.state, again.commands, note=f"re-sent {step.name} compensation")
    overdue = now >= state.started_at + d.deadline and not _past_pivot(d, state)
    if step.kind is StepKind.RETRIABLE or (state.attempt < step.max_attempts and not overdue):
        again = _send_forward(d, state.evolve(attempt=state.attempt + 1), now)
        return Decision(again.state, again.commands, note=f"re-sent {step.name}")
    # The step's outcome is unknown: undo it too (compensations are safe with nothing to undo).
    reason = "saga deadline passed" if overdue else f"{step.name} timed out"
    return _compensate_from(d, state, state.step, reason, now)


def _data_of(payload: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in ("saga_id", "reason")}
