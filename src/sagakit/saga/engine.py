"""The saga engine: ``start`` and ``decide(definition, state, event) -> Decision``.
Pure: no clock (time comes in the event), no I/O.

A saga runs its stages in order; a stage is one step or a parallel group, and every step of
it is sent at once. Events are a start, a reply, a timer firing, or an operator's resume,
resolve or cancel. A reply the current state does not expect (a duplicate, a late reply from an
earlier stage, a reply to a re-sent command that was already answered) changes nothing.

Undoing: when a step refuses or runs out of attempts, the steps of its stage that succeeded
(or whose outcome is unknown) are compensated, the ones still in flight once they answer,
then every earlier stage, last first. A compensation that keeps failing stops the saga in
``COMPENSATION_FAILED`` after its step's budget, for an operator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sagakit.saga.definition import SagaDefinition, Step, StepKind
from sagakit.saga.state import Member, Progress, SagaState, SagaStatus


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
    """An operator takes a saga back: every command in flight is sent again as a new
    attempt (whatever its budget; the deadline still counts from the start), and a saga in
    ``COMPENSATION_FAILED`` sends its failed compensations again with a new budget."""

    now: float


@dataclass(frozen=True)
class Resolved:
    """An operator settled a failed compensation by hand: the saga ends ``FAILED``."""

    note: str
    now: float


@dataclass(frozen=True)
class Cancelled:
    """An operator cancels a running saga: it compensates from where it is, as if its
    current step had run out of attempts (a command in flight may have happened, so it is
    undone too). Refused (nothing changes) once the saga is past its pivot: from there it
    can only go forward."""

    note: str
    now: float


Event = Replied | TimedOut | Resumed | Resolved | Cancelled


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

    def then(self, later: Decision) -> Decision:
        """This decision followed by ``later`` (taken from this one's state)."""
        note = "; ".join(n for n in (self.note, later.note) if n)
        return Decision(later.state, (*self.commands, *later.commands), note=note)


RESEND_BACKOFF_CAP = 8
"""A re-sent command waits its timeout times 2 ** (attempt - 1), at most this many times:
when replies are slow because the system is overloaded, re-sending at a fixed pace would
add to the load that made them slow."""


def _wait(timeout: float, attempt: int) -> float:
    return timeout * min(1 << max(attempt - 1, 0), RESEND_BACKOFF_CAP)


def _payload(state: SagaState) -> dict[str, Any]:
    body = {"saga_id": state.saga_id, **state.data}
    if state.reason is not None:
        body["reason"] = state.reason
    return body


def _send(
    d: SagaDefinition,
    state: SagaState,
    step: Step,
    progress: Progress,
    attempt: int,
    tries: int,
    now: float,
) -> tuple[Member, Command]:
    """The step's action (``SENT``) or compensation (``UNDOING``), sent as ``attempt``."""
    if progress is Progress.SENT:
        action, timeout = step.action, step.timeout
    else:
        action, timeout = step.compensation, d.compensation_timeout
    assert action is not None
    member = Member(progress, attempt, tries, now + _wait(timeout, tries), now)
    return member, Command(action.command, _payload(state), step.name, attempt)


def _with(state: SagaState, name: str, member: Member, **changes: Any) -> SagaState:
    return state.evolve(members={**state.members, name: member}, **changes)


def start(d: SagaDefinition, event: Started) -> Decision:
    """A new saga: its first stage (after the local step that started it) is sent."""
    first = 1 if d.stages[0][0].action is None else 0
    fresh = SagaState(
        saga_id=event.saga_id,
        definition=d.name,
        status=SagaStatus.RUNNING,
        step=first - 1,
        data=dict(event.data),
        started_at=event.now,
        definition_version=d.version,
    )
    return _enter(d, fresh, first, event.now)


def _enter(d: SagaDefinition, state: SagaState, index: int, now: float) -> Decision:
    """Send every step of stage ``index``; past the last, the saga is complete."""
    if index >= len(d.stages):
        done = state.evolve(status=SagaStatus.COMPLETED, step=len(d.stages) - 1, members={})
        return Decision(done, note="completed")
    state = state.evolve(step=index, members={})
    commands = []
    for step in d.stages[index]:
        member, command = _send(d, state, step, Progress.SENT, 1, 1, now)
        state = _with(state, step.name, member)
        commands.append(command)
    return Decision(state, tuple(commands), note=f"-> {d.stage_name(index)}")


def decide(d: SagaDefinition, state: SagaState, event: Event) -> Decision:
    """The next state and the commands to send, for a reply, a timer or an operator. The
    saga is decided by the definition and version it started with, never another."""
    if (state.definition, state.definition_version) != (d.name, d.version):
        raise ValueError(
            f"saga {state.saga_id} runs on {state.definition} v{state.definition_version},"
            f" not {d.name} v{d.version}"
        )
    if state.status.terminal:
        return Decision(state, changed=False, note=f"saga is {state.status}")
    if isinstance(event, Replied):
        return _on_reply(d, state, event)
    if isinstance(event, Resumed):
        return _on_resume(d, state, event.now)
    if isinstance(event, Cancelled):
        return _on_cancel(d, state, event)
    if isinstance(event, Resolved):
        if state.status is not SagaStatus.COMPENSATION_FAILED:
            return Decision(state, changed=False, note="only a failed compensation is resolved")
        # What the compensations could not undo was settled by hand: they count as undone,
        # and the stages before are undone as usual.
        settled = {
            n: Member(Progress.UNDONE, m.attempt, m.tries) if m.progress is Progress.STUCK else m
            for n, m in state.members.items()
        }
        state = state.evolve(members=settled, reason=f"{state.reason}; resolved: {event.note}")
        return _settle(d, state, event.now, note=f"resolved by an operator: {event.note}")
    return _on_timeout(d, state, event.now)


def _ignored(state: SagaState, what: str) -> Decision:
    return Decision(state, changed=False, note=f"ignored {what}")


def _on_reply(d: SagaDefinition, state: SagaState, event: Replied) -> Decision:
    found = d.reply_of(event.type)
    member = state.members.get(found[0].name) if found else None
    if found is None or member is None:
        return _ignored(state, event.type)
    step, _, meaning = found
    got = member.progress
    if got is Progress.SENT and meaning == "done":
        state = state.evolve(data={**state.data, **_data_of(event.payload)})
        if state.status is SagaStatus.RUNNING:
            state = _with(state, step.name, Member(Progress.DONE, member.attempt, member.tries))
            if all(m.progress is Progress.DONE for m in state.members.values()):
                return _enter(d, state, state.step + 1, event.now)
            return Decision(state, note=f"{step.name} done")
        # It answered after the saga turned back: undo it as well.
        undo = _undo(d, state, step, event.now)
        return undo.then(_settle(d, undo.state, event.now, note=f"{step.name} done late"))
    if got is Progress.FAILED and meaning == "done":
        # An earlier attempt was refused, a later one succeeded: it did happen, undo it.
        state = state.evolve(data={**state.data, **_data_of(event.payload)})
        undo = _undo(d, state, step, event.now)
        return undo.then(_settle(d, undo.state, event.now, note=f"{step.name} done after all"))
    if got is Progress.SENT and meaning == "failed":
        state = _with(state, step.name, Member(Progress.FAILED, member.attempt, member.tries))
        if state.status is SagaStatus.RUNNING:
            reason = str(event.payload.get("reason") or event.type)
            return _turn_back(d, state, reason, event.now)
        return _settle(d, state, event.now)
    if got in (Progress.UNDOING, Progress.STUCK) and meaning == "undone":
        state = _with(state, step.name, Member(Progress.UNDONE, member.attempt, member.tries))
        return _settle(d, state, event.now, note=f"{step.name} undone")
    if got is Progress.UNDOING and meaning == "undo_failed":
        why = str(event.payload.get("reason") or event.type)
        again = _undo_again(d, state, step, member, event.now, why)
        return again.then(_settle(d, again.state, event.now))
    return _ignored(state, event.type)


def _undo(d: SagaDefinition, state: SagaState, step: Step, now: float) -> Decision:
    """Send ``step``'s compensation (nothing to send: it counts as undone)."""
    if step.compensation is None:
        return Decision(_with(state, step.name, Member(Progress.UNDONE)))
    member, command = _send(d, state, step, Progress.UNDOING, 1, 1, now)
    return Decision(_with(state, step.name, member), (command,))


def _undo_again(
    d: SagaDefinition, state: SagaState, step: Step, member: Member, now: float, why: str
) -> Decision:
    """Send a compensation again, or give it up when its budget is spent (the caller
    settles the stage)."""
    if member.tries >= step.compensation_attempts:
        stuck = Member(Progress.STUCK, member.attempt, member.tries)
        state = _with(state, step.name, stuck, reason=f"{state.reason}; {step.name}: {why}")
        return Decision(state, note=f"{step.name} compensation gave up: {why}")
    again, command = _send(
        d, state, step, Progress.UNDOING, member.attempt + 1, member.tries + 1, now
    )
    return Decision(
        _with(state, step.name, again), (command,), note=f"re-sent {step.name} compensation"
    )


def _turn_back(d: SagaDefinition, state: SagaState, reason: str, now: float) -> Decision:
    """Start compensating: the stage's steps that succeeded (or may have: ``DONE`` here)
    are undone; the ones in flight are undone when they answer."""
    state = state.evolve(status=SagaStatus.COMPENSATING, reason=reason)
    decision = Decision(state, note=f"compensating: {reason}")
    for name, member in _in_order(d, state):
        if member.progress is Progress.DONE:
            decision = decision.then(_undo(d, decision.state, d.step(name), now))
    return decision.then(_settle(d, decision.state, now))


def _settle(d: SagaDefinition, state: SagaState, now: float, note: str = "") -> Decision:
    """Once no step of the stage is in flight: on to the stage before, or stop if a
    compensation gave up."""
    progress = [m.progress for m in state.members.values()]
    if any(p.in_flight for p in progress):  # (a late success being undone, say)
        return Decision(state.evolve(status=SagaStatus.COMPENSATING), note=note)
    if Progress.STUCK in progress:
        return Decision(
            state.evolve(status=SagaStatus.COMPENSATION_FAILED),
            note="; ".join(filter(None, [note, "compensation failed: an operator decides"])),
        )
    state = state.evolve(status=SagaStatus.COMPENSATING)
    return Decision(state, note=note).then(_undo_before(d, state, state.step - 1, now))


def _undo_before(d: SagaDefinition, state: SagaState, index: int, now: float) -> Decision:
    """Undo stage ``index`` (every step of it succeeded), skipping stages with nothing to
    undo; before the first, the saga has failed."""
    while index >= 0 and all(s.compensation is None for s in d.stages[index]):
        index -= 1
    if index < 0:
        failed = state.evolve(status=SagaStatus.FAILED, step=0, members={})
        return Decision(failed, note=f"failed: {state.reason}")
    decision = Decision(state.evolve(step=index, members={}))
    for step in d.stages[index]:
        decision = decision.then(_undo(d, decision.state, step, now))
    return decision


def _on_resume(d: SagaDefinition, state: SagaState, now: float) -> Decision:
    running = state.status is SagaStatus.RUNNING
    state = state.evolve(status=_resumed_status(state))
    decision = Decision(state, note="resumed")
    for name, member in _in_order(d, state):
        step, current = d.step(name), decision.state
        if member.progress is Progress.SENT and not running:
            decision = decision.then(_undo(d, current, step, now))  # outcome unknown
        elif member.progress in (Progress.SENT, Progress.UNDOING, Progress.STUCK):
            progress = Progress.SENT if member.progress is Progress.SENT else Progress.UNDOING
            tries = 1 if member.progress is Progress.STUCK else member.tries + 1
            again, command = _send(d, current, step, progress, member.attempt + 1, tries, now)
            decision = decision.then(
                Decision(_with(current, name, again), (command,), note=f"re-sent {name}")
            )
    return decision if running else decision.then(_settle(d, decision.state, now))


def _on_cancel(d: SagaDefinition, state: SagaState, event: Cancelled) -> Decision:
    if state.status is not SagaStatus.RUNNING:
        return Decision(
            state, changed=False, note=f"only a running saga is cancelled, not {state.status}"
        )
    if _past_pivot(d, state) or any(s.kind is StepKind.RETRIABLE for s in d.stages[state.step]):
        return Decision(state, changed=False, note="past its pivot: it can only go forward")
    current = state
    for name, member in _in_order(d, state):
        if member.progress is Progress.SENT:  # its outcome is unknown: undo it too
            current = _with(current, name, Member(Progress.DONE, member.attempt, member.tries))
    return _turn_back(d, current, f"cancelled: {event.note}", event.now)


def _resumed_status(state: SagaState) -> SagaStatus:
    if state.status is SagaStatus.COMPENSATION_FAILED:
        return SagaStatus.COMPENSATING
    return state.status


def _on_timeout(d: SagaDefinition, state: SagaState, now: float) -> Decision:
    if state.due_at is None or now < state.due_at:
        return Decision(state, changed=False, note="not due")
    running = state.status is SagaStatus.RUNNING
    due = [(n, m) for n, m in _in_order(d, state) if m.due_at is not None and m.due_at <= now]
    # Steps out of attempts turn the saga back: then nothing is sent forward, not even the
    # re-sends of the others that are due (they are undone when they answer or time out).
    unknown = [n for n, m in due if running and not _may_resend(d, state, d.step(n), m, now)]
    decision = Decision(state)
    for name, member in due:
        step, current = d.step(name), decision.state
        if member.progress is Progress.UNDOING:
            decision = decision.then(_undo_again(d, current, step, member, now, "no answer"))
        elif not running:
            # In flight when the saga turned back, and silent since: undo it as well.
            decision = decision.then(_undo(d, current, step, now))
        elif not unknown:
            again, command = _send(
                d, current, step, Progress.SENT, member.attempt + 1, member.tries + 1, now
            )
            decision = decision.then(
                Decision(_with(current, name, again), (command,), note=f"re-sent {name}")
            )
    if not running:
        return decision.then(_settle(d, decision.state, now))
    if not unknown:
        return decision
    # Their outcome is unknown: undo them too (compensations are safe with nothing to undo).
    current = decision.state
    for name in unknown:
        member = current.members[name]
        current = _with(current, name, Member(Progress.DONE, member.attempt, member.tries))
    overdue = now >= state.started_at + d.deadline
    reason = "saga deadline passed" if overdue else f"{', '.join(unknown)} timed out"
    return Decision(current, decision.commands, note=decision.note).then(
        _turn_back(d, current, reason, now)
    )


def _may_resend(
    d: SagaDefinition, state: SagaState, step: Step, member: Member, now: float
) -> bool:
    if step.kind is StepKind.RETRIABLE:
        return True
    overdue = now >= state.started_at + d.deadline and not _past_pivot(d, state)
    return member.tries < step.max_attempts and not overdue


def _past_pivot(d: SagaDefinition, state: SagaState) -> bool:
    pivot = d.pivot
    return pivot is not None and state.step > pivot


def _in_order(d: SagaDefinition, state: SagaState) -> list[tuple[str, Member]]:
    """The stage's members in the definition's order (commands go out in that order,
    whatever order the stored state kept them in)."""
    return sorted(state.members.items(), key=lambda item: d.positions.get(item[0], -1))


def _data_of(payload: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in ("saga_id", "reason")}
