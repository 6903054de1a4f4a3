"""The console's story of a saga from its log rows: spans for the waterfall, each step's
state for the diagram (pure: no database)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from examples.shop.saga import RESERVE_FIRST

from sagakit.console.drawing import draw
from sagakit.console.story import tell, trace_id

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def row(ms: int, status: str, step: str, event: str, sent: list[tuple[str, int]]) -> dict[str, Any]:
    messages = {
        "received": {},
        "sent": [{"type": t, "step": step, "attempt": a, "payload": {}} for t, a in sent],
    }
    return {
        "at": T0 + timedelta(milliseconds=ms),
        "status": status,
        "step": step,
        "event": event,
        "note": "",
        "commands": [t for t, _ in sent],
        "messages": json.dumps(messages),
    }


def saga(status: str, members: dict[str, Any] | None = None, ms: int = 1000) -> dict[str, Any]:
    return {
        "status": status,
        "members": json.dumps(members or {}),
        "updated_at": T0 + timedelta(milliseconds=ms),
    }


def test_a_re_send_then_a_refusal_then_compensations() -> None:
    log = [
        row(0, "RUNNING", "reserve_stock", "start", [("inventory.reserve", 1)]),
        row(40, "RUNNING", "take_payment", "inventory.reserved", [("payment.process", 1)]),
        row(540, "RUNNING", "take_payment", "timer", [("payment.process", 2)]),
        row(600, "COMPENSATING", "reserve_stock", "payment.failed", [("inventory.release", 1)]),
        row(620, "COMPENSATING", "create_order", "inventory.released", [("order.cancel", 1)]),
        row(640, "FAILED", "create_order", "order.cancelled", []),
    ]
    story = tell(RESERVE_FIRST, saga("FAILED", ms=640), log, T0 + timedelta(seconds=9))
    spans = [(s.step, s.kind, s.attempt, s.outcome, s.millis) for s in story.spans]
    assert spans == [
        ("reserve_stock", "action", 1, "done", 40.0),
        ("take_payment", "action", 1, "re-sent", 500.0),
        ("take_payment", "action", 2, "failed", 60.0),
        ("reserve_stock", "compensation", 1, "undone", 20.0),
        ("create_order", "compensation", 1, "undone", 20.0),
    ]
    assert story.states == {
        "create_order": "undone",
        "reserve_stock": "undone",
        "take_payment": "failed",
        "commit_stock": "pending",
        "confirm_order": "pending",
    }
    assert story.total_ms == 640.0, "an ended saga's time stops at its end"
    assert all(0 <= s.left <= 100 and 0 < s.width <= 100 - s.left + 1e-9 for s in story.spans)


def test_a_cancel_ends_the_command_in_flight_and_the_running_stage_is_marked() -> None:
    log = [
        row(0, "RUNNING", "reserve_stock", "start", [("inventory.reserve", 1)]),
        row(40, "RUNNING", "take_payment", "inventory.reserved", [("payment.process", 1)]),
        row(700, "COMPENSATING", "take_payment", "cancelled by ada: x", [("payment.refund", 1)]),
    ]
    members = {"take_payment": {"progress": "undoing", "attempt": 1, "tries": 1, "due_at": 9.0}}
    now = T0 + timedelta(milliseconds=900)
    story = tell(RESERVE_FIRST, saga("COMPENSATING", members), log, now)
    process, refund = story.spans[1], story.spans[2]
    assert (process.outcome, process.millis) == ("no answer", 660.0)
    assert refund.outcome == "" and refund.end is None, "in flight"
    assert story.states["take_payment"] == "compensating"
    assert story.total_ms == 900.0, "a running saga's time runs to now"
    drawing = draw(RESERVE_FIRST, story.states, current=2)
    current = [b.name for b in drawing.boxes if b.current]
    assert current == ["take_payment"]
    assert {b.name: b.state for b in drawing.boxes}["reserve_stock"] == "done"


def test_rows_logged_before_payloads_were_kept_still_tell() -> None:
    old = row(0, "RUNNING", "reserve_stock", "start", [("inventory.reserve", 1)])
    old["messages"] = None
    story = tell(RESERVE_FIRST, saga("RUNNING"), [old], T0 + timedelta(seconds=1))
    assert [s.command for s in story.spans] == ["inventory.reserve"]
    assert story.lines[0].received is None


def test_trace_ids_come_from_a_traceparent() -> None:
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert trace_id(tp) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_id(None) is None and trace_id("garbage") is None
