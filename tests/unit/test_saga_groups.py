"""The engine with parallel groups, compensation budgets and versions: worked examples, then
random reply/timeout/operator histories checked against the rules every saga keeps."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import pytest
from examples.shop.saga import RESERVE_FIRST
from hypothesis import given, settings
from hypothesis import strategies as st

from sagakit.saga import (
    Action,
    Cancelled,
    Decision,
    Parallel,
    Replied,
    Resolved,
    Resumed,
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
from sagakit.saga.state import Progress


def _undo(name: str, budget: int = 3) -> dict[str, object]:
    return {
        "compensation": Action(f"{name}.cancel", f"{name}.cancelled", failure=(f"{name}.stuck",)),
        "compensation_attempts": budget,
    }


TRIP = SagaDefinition(
    "trip",
    (
        Parallel(
            "book_stay",
            Step(
                "flight",
                Action("flight.book", "flight.booked"),
                failure=("flight.full",),
                **_undo("flight"),
            ),  # type: ignore[arg-type]
            Step(
                "hotel",
                Action("hotel.book", "hotel.booked"),
                failure=("hotel.full",),
                **_undo("hotel"),
            ),  # type: ignore[arg-type]
        ),
        Step("car", Action("car.rent", "car.rented"), failure=("car.none",), **_undo("car")),  # type: ignore[arg-type]
        Step(
            "pay",
            Action("pay.charge", "pay.charged"),
            failure=("pay.declined",),
            kind=StepKind.PIVOT,
            **_undo("pay"),  # type: ignore[arg-type]
        ),
        Parallel(
            "notify",
            Step("mail", Action("mail.send", "mail.sent"), kind=StepKind.RETRIABLE),
            Step("sms", Action("sms.send", "sms.sent"), kind=StepKind.RETRIABLE),
        ),
    ),
    deadline=1e6,
)


def feed(
    d: SagaDefinition, *events: str | float, state: SagaState | None = None
) -> tuple[SagaState, list[str]]:
    """Apply replies (a type) and timer firings (a time); the final state and the commands."""
    decision = start(d, Started("t1", {"who": "ada"}, 0.0)) if state is None else None
    state = decision.state if decision else state
    sent = [c.type for c in decision.commands] if decision else []
    assert state is not None
    for ev in events:
        event = TimedOut(ev) if isinstance(ev, float) else Replied(ev, {"reason": ev}, 1.0)
        step = decide(d, state, event)
        state, sent = step.state, sent + [c.type for c in step.commands]
    return state, sent


def test_a_group_is_sent_at_once_and_joins() -> None:
    state, sent = feed(TRIP)
    assert sent == ["flight.book", "hotel.book"]
    assert set(state.members) == {"flight", "hotel"}
    state, sent = feed(TRIP, "hotel.booked", state=state)
    assert sent == [] and state.members["hotel"].progress is Progress.DONE
    state, sent = feed(TRIP, "hotel.booked", "flight.booked", state=state)
    assert sent == ["car.rent"], "the duplicate changed nothing; the second member joined"
    state, sent = feed(TRIP, "car.rented", "pay.charged", "sms.sent", "mail.sent", state=state)
    assert sent == ["pay.charge", "mail.send", "sms.send"]
    assert state.status is SagaStatus.COMPLETED


def test_a_failing_member_undoes_its_partner_then_nothing_before() -> None:
    state, sent = feed(TRIP, "flight.booked", "hotel.full", "flight.cancelled")
    assert sent == ["flight.book", "hotel.book", "flight.cancel"]
    assert state.status is SagaStatus.FAILED and state.reason == "hotel.full"


def test_a_member_in_flight_when_its_partner_fails_is_undone_when_it_answers() -> None:
    state, sent = feed(TRIP, "hotel.full")
    assert sent == ["flight.book", "hotel.book"] and state.status is SagaStatus.COMPENSATING
    done, more = feed(TRIP, "flight.booked", "flight.cancelled", state=state)
    assert more == ["flight.cancel"] and done.status is SagaStatus.FAILED
    refused, more = feed(TRIP, "flight.full", state=state)
    assert more == [] and refused.status is SagaStatus.FAILED, "nothing to undo"
    silent, more = feed(TRIP, 1e3, state=state)  # timed out: outcome unknown
    assert more == ["flight.cancel"] and silent.status is SagaStatus.COMPENSATING


def test_a_later_failure_undoes_the_whole_group_together() -> None:
    state, sent = feed(TRIP, "flight.booked", "hotel.booked", "car.none")
    assert sent[-2:] == ["flight.cancel", "hotel.cancel"]
    state, _ = feed(TRIP, "hotel.cancelled", state=state)
    assert state.status is SagaStatus.COMPENSATING, "waits for every member"
    state, _ = feed(TRIP, "flight.cancelled", state=state)
    assert state.status is SagaStatus.FAILED and state.reason == "car.none"


def test_a_stuck_member_stops_the_saga_for_an_operator_after_its_partner_settles() -> None:
    state, _ = feed(TRIP, "flight.booked", "hotel.booked", "car.none", "car.none")
    state, _ = feed(TRIP, *["flight.stuck"] * 3, state=state)
    assert state.members["flight"].progress is Progress.STUCK
    assert state.status is SagaStatus.COMPENSATING, "the hotel is still being undone"
    state, _ = feed(TRIP, "hotel.cancelled", state=state)
    assert state.status is SagaStatus.COMPENSATION_FAILED and state.due_at is None
    again = decide(TRIP, state, Resumed(5.0))
    assert [c.type for c in again.commands] == ["flight.cancel"]
    state, _ = feed(TRIP, "flight.cancelled", state=again.state)
    assert state.status is SagaStatus.FAILED


def test_a_saga_records_its_definition_version_and_keeps_to_it() -> None:
    v2 = SagaDefinition("trip", TRIP.steps, version=2)
    first = start(v2, Started("t", {}, 0.0))
    assert first.state.definition_version == 2
    assert start(TRIP, Started("t", {}, 0.0)).state.definition_version == 1
    with pytest.raises(ValueError, match="runs on trip v2, not trip v1"):
        decide(TRIP, first.state, TimedOut(1e9))


def test_groups_are_validated() -> None:
    a, b = Step("a", Action("a.do", "a.done")), Step("b", Action("b.do", "b.done"))
    with pytest.raises(ValueError, match="2\\+ steps, each an action"):
        SagaDefinition("x", (Step("first"), Parallel("g", a)))
    with pytest.raises(ValueError, match="share one kind, and not pivot"):
        SagaDefinition(
            "x", (Parallel("g", a, Step("p", Action("p", "p.ok"), kind=StepKind.PIVOT)),)
        )
    with pytest.raises(ValueError, match="step names repeat"):
        SagaDefinition("x", (Parallel("a", a, b),))
    with pytest.raises(ValueError, match="a pivot needs a compensation"):
        SagaDefinition("x", (a, Step("p", Action("p", "p.ok"), kind=StepKind.PIVOT)))


# -- random histories --------------------------------------------------------------------

DEFINITIONS = {
    "trip": TRIP,
    "trip-v3": replace(TRIP, version=3),
    "order": RESERVE_FIRST,
    "order-small-budgets": replace(
        RESERVE_FIRST,
        steps=tuple(replace(s, compensation_attempts=2) for s in RESERVE_FIRST.all_steps),
    ),
}
OPERATOR = ("resume", "resolve", "cancel")


PROGRESS = ("ok", "ok", "ok", "no", "tick", "tick")
"""Answers to what is in flight (success, refusal), and timers: histories that go deep."""


def _history(d: SagaDefinition) -> st.SearchStrategy[list[str]]:
    progress = st.sampled_from(PROGRESS)
    anything = st.sampled_from([*d.reply_types, *OPERATOR])  # duplicates, strays, late ones
    return st.lists(st.one_of(progress, progress, progress, anything), min_size=5, max_size=60)


def _answer(d: SagaDefinition, state: SagaState, ok: bool, pick: int) -> str | None:
    """A reply to one of the commands in flight: success, or its failure."""
    options = []
    for name, member in state.members.items():
        step = next(s for s in d.all_steps if s.name == name)
        if member.progress is Progress.SENT and step.action:
            options.append(step.action.done if ok or not step.failure else step.failure[0])
        elif member.progress is Progress.UNDOING and step.compensation:
            comp = step.compensation
            options.append(comp.done if ok or not comp.failure else comp.failure[0])
    return options[pick % len(options)] if options else None


def _apply(d: SagaDefinition, state: SagaState, ev: str, now: float) -> tuple[str, Decision]:
    """The event ``ev`` stands for (a reply type, tick, resume, resolve, cancel), and its
    decision."""
    if ev in ("ok", "no"):
        ev = _answer(d, state, ev == "ok", int(now)) or "tick"
    if ev == "tick":
        return ev, decide(d, state, TimedOut(max(now, state.due_at or now)))
    if ev == "resume":
        return ev, decide(d, state, Resumed(now))
    if ev == "resolve":
        return ev, decide(d, state, Resolved("by hand", now))
    if ev == "cancel":
        return ev, decide(d, state, Cancelled("by hand", now))
    return ev, decide(d, state, Replied(ev, {"reason": ev}, now))


def _check(d: SagaDefinition, log: Sequence[tuple[SagaState, str, Decision]]) -> None:
    """The rules, judged from what was sent and answered (not from the engine's state)."""
    started: set[str] = set()  # steps whose action was sent
    succeeded: set[str] = set()  # steps whose success was taken
    refused: set[str] = set()  # steps whose refusal was taken (and no success after)
    ids: set[tuple[str, int]] = set()  # (command, attempt): the message id it is sent with
    undo_sends: Counter[str] = Counter()  # compensation sends per step, in its budget
    pivot = d.stages[d.pivot][0].name if d.pivot is not None else None
    for before, event, decision in log:
        after = decision.state
        assert after.definition_version == d.version, "a saga keeps its version"
        answered = d.reply_of(event)
        if decision.changed and answered and answered[2] == "failed":
            refused.add(answered[0].name)
        if decision.changed and answered and answered[2] == "done":
            succeeded.add(answered[0].name)
            refused.discard(answered[0].name)
        if not decision.changed:
            assert after == before and not decision.commands
        for c in decision.commands:
            assert (c.type, c.attempt) not in ids, f"{c.type} #{c.attempt} sent twice: one id"
            ids.add((c.type, c.attempt))
            step, action = d.action_for(c.type) or (None, None)
            assert step is not None
            if action is step.action:
                assert after.status is SagaStatus.RUNNING, f"forward {c.type} while turning back"
                assert pivot not in succeeded or step.kind is StepKind.RETRIABLE, c.type
                started.add(step.name)
            else:
                assert step.name in started or step.action is None, (
                    f"{c.type}: compensation of a step never started"
                )
                assert pivot not in succeeded, f"{c.type}: compensation after the pivot succeeded"
                assert step.name not in refused, f"{c.type}: compensation of a step that refused"
                was = before.members.get(step.name)
                if was is not None and was.progress is Progress.STUCK:  # retried: a new budget
                    undo_sends[step.name] = 0
                undo_sends[step.name] += 1
                # An operator's resume sends what is in flight whatever its budget; nothing
                # else ever sends a compensation past it.
                within = undo_sends[step.name] <= step.compensation_attempts
                assert event == "resume" or within, f"{c.type}: over its budget"
        if after.status is SagaStatus.COMPENSATION_FAILED:
            spent = [s.name for s in d.all_steps if undo_sends[s.name] >= s.compensation_attempts]
            assert spent, "COMPENSATION_FAILED with no compensation's budget spent"
        if after.status is SagaStatus.FAILED and before.status is not SagaStatus.FAILED:
            undone = {s.name for s in d.all_steps if s.compensation} & succeeded
            sent_undo = {
                c.step
                for _, _, dec in log
                for c in dec.commands
                if d.action_for(c.type) and d.action_for(c.type)[1] is not _forward(d, c.type)
            }
            assert undone <= sent_undo, f"FAILED with {undone - sent_undo} never undone"
        assert (after.due_at is None) == (
            after.status.terminal or after.status is SagaStatus.COMPENSATION_FAILED
        ), after


def _forward(d: SagaDefinition, command: str) -> object:
    found = d.action_for(command)
    return found[0].action if found else None


def _finish(
    d: SagaDefinition, state: SagaState, now: float, resolve: bool
) -> tuple[SagaState, list[tuple[SagaState, str, Decision]]]:
    """Answer the commands in flight with success (an operator retries, or resolves, a
    failed compensation) until the saga ends; the decisions taken on the way."""
    log = []
    for _ in range(200):
        if state.status.terminal:
            return state, log
        event = "resolve" if resolve else "resume"
        if state.status is not SagaStatus.COMPENSATION_FAILED:
            answer = _answer(d, state, True, 0)
            assert answer is not None, f"nothing in flight in {state}"
            event = answer
        _, decision = _apply(d, state, event, now)
        log.append((state, event, decision))
        state, now = decision.state, now + 1
    raise AssertionError(f"no end after 200 answers: {state}")


@pytest.mark.parametrize("name", DEFINITIONS)
@settings(max_examples=1000, deadline=None)
@given(data=st.data())
def test_random_histories_keep_the_rules(name: str, data: st.DataObject) -> None:
    """Whatever arrives in whatever order (replies, duplicates, timers, operators): no
    compensation of a step never started (or that refused), no forward step once turning
    back, no compensation once the pivot succeeded, never one message id for two sends, a
    timer exactly when something is in flight, no FAILED saga with a success left undone;
    and answering what is in flight always brings the saga to an end."""
    d = DEFINITIONS[name]
    events = data.draw(_history(d))
    first = start(d, Started("s1", {"who": "ada"}, 0.0))
    log: list[tuple[SagaState, str, Decision]] = []
    state, now = first.state, 0.0
    initial = SagaState("s1", d.name, SagaStatus.RUNNING, step=-1)
    log.append((initial, "start", first))
    for ev in events:
        now += 1
        event, decision = _apply(d, state, ev, now)
        log.append((state, event, decision))
        state = decision.state
    final, tail = _finish(d, state, now, resolve=data.draw(st.booleans()))
    _check(d, [*log, *tail])
    assert final.status in (SagaStatus.COMPLETED, SagaStatus.FAILED)


def test_a_success_after_a_refusal_of_another_attempt_is_undone() -> None:
    state, sent = feed(TRIP, 100.0, "flight.full", "flight.booked")
    assert sent == ["flight.book", "hotel.book", "flight.book", "hotel.book", "flight.cancel"]
    assert state.status is SagaStatus.COMPENSATING


def test_nothing_goes_forward_in_the_decision_that_turns_back() -> None:
    f = Step(
        "f",
        Action("f.do", "f.done"),
        compensation=Action("f.undo", "f.undone"),
        timeout=1.0,
        max_attempts=5,
    )
    h = Step(
        "h",
        Action("h.do", "h.done"),
        compensation=Action("h.undo", "h.undone"),
        timeout=1.0,
        max_attempts=2,
    )
    d = SagaDefinition("g", (Parallel("both", f, h),), deadline=1e6)
    state, sent = feed(d, 1.0, 3.0)
    assert sent == ["f.do", "h.do", "f.do", "h.do", "h.undo"]
    assert state.status is SagaStatus.COMPENSATING
    assert state.members["f"].progress is Progress.SENT, "undone once it answers or times out"


def test_resolving_a_failed_compensation_goes_on_undoing_the_stages_before() -> None:
    state, _ = feed(
        TRIP, "flight.booked", "hotel.booked", "car.rented", "pay.declined", *["car.stuck"] * 3
    )
    assert state.status is SagaStatus.COMPENSATION_FAILED
    resolved = decide(TRIP, state, Resolved("returned the car by hand", 50.0))
    assert [c.type for c in resolved.commands] == ["flight.cancel", "hotel.cancel"]
    assert resolved.state.status is SagaStatus.COMPENSATING
    assert "resolved: returned the car by hand" in (resolved.state.reason or "")
