"""The pure engine, exhaustively: every reachable state x every reply type and the timer."""

from __future__ import annotations

from collections import deque

import pytest
from examples.shop.saga import RESERVE_FIRST
from hypothesis import given, settings
from hypothesis import strategies as st

from sagakit.saga import (
    Action,
    Cancelled,
    Decision,
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
from sagakit.saga.engine import RESEND_BACKOFF_CAP

D = RESERVE_FIRST
DATA = {"order_id": "o1", "product_id": "p1", "quantity": 2, "customer_id": "c1"}


def begin(now: float = 0.0) -> Decision:
    return start(D, Started("o1", DATA, now))


def run(*events: tuple[str, dict[str, object]] | float) -> tuple[SagaState, list[str]]:
    """Apply replies (type, payload) and timer firings (a time) in turn; return the final
    state and every command type sent, in order."""
    decision = begin()
    sent = [c.type for c in decision.commands]
    state = decision.state
    for ev in events:
        if isinstance(ev, float | int):
            decision = decide(D, state, TimedOut(float(ev)))
        else:
            decision = decide(D, state, Replied(ev[0], ev[1], 1.0))
        sent += [c.type for c in decision.commands]
        state = decision.state
    return state, sent


OK = {}


def test_happy_path() -> None:
    state, sent = run(
        ("inventory.reserved", {"amount_cents": 500}),
        ("payment.success", OK),
        ("inventory.completed", OK),
        ("order.confirmed", OK),
    )
    assert state.status is SagaStatus.COMPLETED and state.due_at is None
    assert sent == ["inventory.reserve", "payment.process", "inventory.complete", "order.confirm"]
    assert state.data["amount_cents"] == 500, "reply data flows into later commands"


def test_out_of_stock_cancels_the_order_only() -> None:
    state, sent = run(("inventory.failed", {"reason": "out of stock"}), ("order.cancelled", OK))
    assert sent == ["inventory.reserve", "order.cancel"]
    assert state.status is SagaStatus.FAILED and state.reason == "out of stock"


def test_declined_payment_releases_stock_then_cancels() -> None:
    state, sent = run(
        ("inventory.reserved", OK),
        ("payment.failed", {"reason": "insufficient funds"}),
        ("inventory.released", OK),
        ("order.cancelled", OK),
    )
    assert sent == ["inventory.reserve", "payment.process", "inventory.release", "order.cancel"]
    assert state.status is SagaStatus.FAILED and state.reason == "insufficient funds"


def test_payment_timeouts_resend_then_refund_release_cancel() -> None:
    t = D.steps[2].timeout
    state, sent = run(
        ("inventory.reserved", OK),
        1 + t,  # re-sent; the next wait doubles (backoff)
        1 + 3 * t + 1,  # re-sent again, waits four times as long
        1 + 7 * t + 2,  # out of attempts: compensate
        ("payment.refunded", OK),
        ("inventory.released", OK),
        ("order.cancelled", OK),
    )
    assert sent == [
        "inventory.reserve",
        "payment.process",
        "payment.process",
        "payment.process",
        "payment.refund",
        "inventory.release",
        "order.cancel",
    ]
    assert state.status is SagaStatus.FAILED and state.reason == "take_payment timed out"


def test_after_the_pivot_steps_are_resent_without_limit() -> None:
    state, sent = run(
        ("inventory.reserved", OK),
        ("payment.success", OK),
        *(float(100 * n) for n in range(1, 30)),
    )
    assert state.status is SagaStatus.RUNNING
    assert sent.count("inventory.complete") == 30
    assert "inventory.release" not in sent and "payment.refund" not in sent


def test_a_compensation_is_resent_within_its_budget_then_waits_for_an_operator() -> None:
    budget = D.steps[0].compensation_attempts
    state, sent = run(("inventory.failed", OK), *(float(100 * n) for n in range(1, budget + 3)))
    assert sent.count("order.cancel") == budget
    assert state.status is SagaStatus.COMPENSATION_FAILED and state.due_at is None
    assert "create_order: no answer" in (state.reason or "")
    # A late acknowledgement still counts: the saga finishes undoing.
    late = decide(D, state, Replied("order.cancelled", OK, 9e3))
    assert late.state.status is SagaStatus.FAILED
    # Or an operator retries it (a new budget, a new message id) ...
    retried = decide(D, state, Resumed(9e3))
    assert [c.type for c in retried.commands] == ["order.cancel"]
    assert retried.commands[0].attempt == budget + 1
    assert retried.state.status is SagaStatus.COMPENSATING
    assert retried.state.members["create_order"].tries == 1
    # ... or resolves it by hand, with a note.
    resolved = decide(D, state, Resolved("refunded by phone", 9e3))
    assert resolved.state.status is SagaStatus.FAILED
    assert (resolved.state.reason or "").endswith("; resolved: refunded by phone")
    assert not decide(D, late.state, Resolved("x", 9e3)).changed


def test_a_compensation_that_answers_failed_is_retried_then_gives_up() -> None:
    undo = Action("x.undo", "x.undone", failure=("x.undo_failed",))
    d = SagaDefinition(
        "budget",
        (
            Step("a", Action("x.do", "x.done"), compensation=undo, compensation_attempts=2),
            Step("b", Action("y.do", "y.done"), failure=("y.no",)),
        ),
    )
    state = start(d, Started("s", {}, 0.0)).state
    sent = []
    for reply in ["x.done", "y.no", "x.undo_failed", "x.undo_failed", "x.undo_failed"]:
        decision = decide(d, state, Replied(reply, {"reason": "locked"}, 1.0))
        state = decision.state
        sent += [c.type for c in decision.commands]
    assert sent == ["y.do", "x.undo", "x.undo"]
    assert state.status is SagaStatus.COMPENSATION_FAILED
    assert state.reason == "locked; a: locked"


def test_deadline_before_the_pivot_compensates() -> None:
    d = SagaDefinition(name="short", steps=D.steps, deadline=3.0)
    state = start(d, Started("o1", DATA, 0.0)).state
    decision = decide(d, state, TimedOut(D.steps[1].timeout + 1))
    assert [c.type for c in decision.commands] == ["inventory.release"]
    assert decision.state.reason == "saga deadline passed"


def test_timer_not_due_changes_nothing() -> None:
    state = begin().state
    assert not decide(D, state, TimedOut(0.5)).changed


def _reachable() -> list[SagaState]:
    """Every state reachable from the start by replies and timer firings (bounded attempts)."""
    seen: dict[tuple[object, ...], SagaState] = {}
    queue = deque([begin().state])
    replies = D.reply_types
    while queue:
        state = queue.popleft()
        sig = (state.status, state.step, state.attempt, state.reason)
        if sig in seen or state.attempt > 4:
            continue
        seen[sig] = state
        for r in replies:
            queue.append(decide(D, state, Replied(r, {"reason": "no"}, 1.0)).state)
        if state.due_at is not None:
            queue.append(decide(D, state, TimedOut(state.due_at)).state)
    return list(seen.values())


REACHABLE = _reachable()
ALLOWED = {
    SagaStatus.RUNNING: {SagaStatus.RUNNING, SagaStatus.COMPENSATING, SagaStatus.COMPLETED},
    SagaStatus.COMPENSATING: {
        SagaStatus.COMPENSATING,
        SagaStatus.FAILED,
        SagaStatus.COMPENSATION_FAILED,
    },
    SagaStatus.COMPENSATION_FAILED: {
        SagaStatus.COMPENSATION_FAILED,
        SagaStatus.COMPENSATING,
        SagaStatus.FAILED,
    },
    SagaStatus.COMPLETED: {SagaStatus.COMPLETED},
    SagaStatus.FAILED: {SagaStatus.FAILED},
}


def test_reachable_state_space_is_covered() -> None:
    statuses = {s.status for s in REACHABLE}
    assert statuses == set(SagaStatus) - {SagaStatus.COMPENSATION_FAILED}  # past 4 attempts
    assert len(REACHABLE) > 20


@pytest.mark.parametrize("state", REACHABLE, ids=lambda s: f"{s.status}-{s.step}-{s.attempt}")
@pytest.mark.parametrize("reply", D.reply_types)
def test_every_state_and_reply(state: SagaState, reply: str) -> None:
    decision = decide(D, state, Replied(reply, {"reason": "r"}, 2.0))
    new = decision.state
    assert new.status in ALLOWED[state.status]
    if not decision.changed:
        assert new == state and decision.commands == ()
        return
    # a change answers what the state was waiting for
    step = D.steps[state.step]
    expected = (
        {step.action.done, *step.failure}
        if state.status is SagaStatus.RUNNING and step.action
        else {step.compensation.done}
        if step.compensation
        else set()
    )
    assert reply in expected
    assert len(decision.commands) == (0 if new.status.terminal else 1)
    assert (new.due_at is None) == new.status.terminal
    # the same reply again (a duplicate) is ignored
    again = decide(D, new, Replied(reply, {"reason": "r"}, 3.0))
    assert not again.changed and again.state == new
    pivot = D.pivot
    assert pivot is not None
    if state.status is SagaStatus.RUNNING and state.step > pivot:
        assert new.status is not SagaStatus.COMPENSATING, "no compensation after the pivot"


@pytest.mark.parametrize("state", REACHABLE, ids=lambda s: f"{s.status}-{s.step}-{s.attempt}")
def test_every_state_and_timer(state: SagaState) -> None:
    if state.due_at is None:
        assert state.status.terminal
        assert not decide(D, state, TimedOut(1e9)).changed
        return
    decision = decide(D, state, TimedOut(state.due_at))
    assert decision.changed and len(decision.commands) == 1
    assert decision.state.status in ALLOWED[state.status]
    assert decision.state.due_at is not None and decision.state.due_at > state.due_at - 1e-9


replies = st.sampled_from(D.reply_types)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(replies, st.just("tick")), max_size=25))
def test_random_histories_keep_the_compensation_discipline(events: list[str]) -> None:
    """Whatever arrives, in whatever order: commands follow the saga's shape, and a saga
    that failed undid exactly the steps it started, in reverse order."""
    decision = begin()
    state, sent, now = decision.state, [c.type for c in decision.commands], 0.0
    for ev in events:
        now += 1
        if ev == "tick":
            now = max(now, state.due_at or now)
            decision = decide(D, state, TimedOut(now))
        else:
            decision = decide(D, state, Replied(ev, {}, now))
        state = decision.state
        sent += [c.type for c in decision.commands]
    forward = [s.action.command for s in D.steps if s.action]
    undo = [s.compensation.command for s in D.steps if s.compensation]
    first_undo = next((i for i, t in enumerate(sent) if t in undo), len(sent))
    started = list(dict.fromkeys(sent[:first_undo]))
    assert started == forward[: len(started)], "forward commands in step order"
    assert all(t in undo for t in sent[first_undo:]), "no forward command after compensating"
    undone = list(dict.fromkeys(sent[first_undo:]))
    assert undone == sorted(undone, key=undo.index, reverse=True), "undo in reverse order"
    if state.status is SagaStatus.COMPLETED:
        assert first_undo == len(sent)


def test_definitions_are_validated() -> None:
    a = Action("x.do", "x.done")
    with pytest.raises(ValueError, match="after the pivot"):
        SagaDefinition("bad", (Step("a", a, kind=StepKind.PIVOT), Step("b", Action("y", "z"))))
    with pytest.raises(ValueError, match="only the first step"):
        SagaDefinition("bad", (Step("a", a), Step("b")))
    with pytest.raises(ValueError, match="one step only"):
        SagaDefinition("bad", (Step("a", a), Step("b", a)))
    with pytest.raises(ValueError, match="cannot fail"):
        SagaDefinition("bad", (Step("a", a, failure=("x.no",), kind=StepKind.RETRIABLE),))


@pytest.mark.parametrize("state", _reachable(), ids=lambda s: f"{s.status}-{s.step}-{s.attempt}")
def test_resuming_resends_the_current_step_as_a_new_attempt(state: SagaState) -> None:
    decision = decide(D, state, Resumed(100.0))
    if state.status.terminal:
        assert not decision.changed and not decision.commands
        return
    step = D.steps[state.step]
    action = step.compensation if state.status is SagaStatus.COMPENSATING else step.action
    assert action is not None
    assert [c.type for c in decision.commands] == [action.command]
    assert decision.commands[0].attempt == state.attempt + 1, "a new message id"
    assert decision.state.status is state.status and decision.state.step == state.step
    assert decision.state.due_at is not None and decision.state.due_at > 100.0


def test_resends_back_off() -> None:
    state = begin(0.0).state
    waits = []
    for _ in range(6):
        assert state.due_at is not None
        decision = decide(D, state, TimedOut(state.due_at))
        waits.append(decision.state.due_at - state.due_at if decision.state.due_at else None)
        state = decision.state
    t = D.steps[1].timeout
    assert waits[:2] == [2 * t, 4 * t], "reserve: 3 attempts, each waiting twice as long"
    assert state.status is SagaStatus.COMPENSATING
    comps = [w for w in waits[2:] if w is not None]
    assert comps == sorted(comps) and max(comps) <= RESEND_BACKOFF_CAP * D.compensation_timeout


def test_cancel_compensates_what_is_in_flight_and_what_is_done() -> None:
    """An operator's cancel at the payment step: the charge may have happened, so it is
    undone, and so is the reservation before it; the saga ends FAILED with the note."""
    state, _ = run(("inventory.reserved", {"amount_cents": 500}))
    decision = decide(D, state, Cancelled("customer called", 5.0))
    assert [c.type for c in decision.commands] == ["payment.refund"]
    assert decision.state.status is SagaStatus.COMPENSATING
    assert decision.state.reason == "cancelled: customer called"
    state = decision.state
    sent = []
    for reply in ("payment.refunded", "inventory.released", "order.cancelled"):
        decision = decide(D, state, Replied(reply, {}, 6.0))
        sent += [c.type for c in decision.commands]
        state = decision.state
    assert sent == ["inventory.release", "order.cancel"]
    assert state.status is SagaStatus.FAILED


def test_cancel_is_refused_past_the_pivot_and_when_not_running() -> None:
    state, _ = run(("inventory.reserved", {}), ("payment.success", OK))
    past = decide(D, state, Cancelled("too late", 5.0))
    assert not past.changed and not past.commands and "pivot" in past.note
    failed, _ = run(("inventory.failed", {"reason": "out of stock"}))
    turning = decide(D, failed, Cancelled("twice", 5.0))
    assert not turning.changed and "only a running saga" in turning.note
