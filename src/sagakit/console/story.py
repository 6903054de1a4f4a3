"""What happened to one saga, from its log: each step's state for the diagram, and the span
of every command (sent, answered or not) for the waterfall. Pure: rows in, values out."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sagakit.saga import SagaDefinition, SagaStatus
from sagakit.saga.state import Progress

STATE_OF_PROGRESS = {
    Progress.SENT: "running",
    Progress.DONE: "done",
    Progress.FAILED: "failed",
    Progress.UNDOING: "compensating",
    Progress.UNDONE: "undone",
    Progress.STUCK: "stuck",
}
OUTCOME_STATE = {
    "done": "done",
    "failed": "failed",
    "undone": "undone",
    "undo_failed": "compensating",
}


@dataclass
class Span:
    """One send of a step's command (``action``) or compensation, and what came of it."""

    step: str
    kind: str
    command: str
    attempt: int
    start: datetime
    end: datetime | None = None
    outcome: str = ""
    """``done``, ``failed``, ``undone``, ``undo_failed``, ``re-sent``, ``no answer``; empty
    while in flight."""
    left: float = 0.0
    width: float = 0.0
    """Place on the waterfall, in percent of the saga's time so far."""

    @property
    def millis(self) -> float | None:
        return None if self.end is None else (self.end - self.start).total_seconds() * 1000


@dataclass
class Line:
    """One transition of the log, with what it received and sent."""

    at: datetime
    offset_ms: float
    status: str
    step: str
    event: str
    note: str
    commands: Sequence[str]
    received: Any = None
    sent: Sequence[Mapping[str, Any]] = ()


@dataclass
class Story:
    lines: list[Line] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    states: dict[str, str] = field(default_factory=dict)
    """Each step's state: ``pending``, ``running``, ``done``, ``failed``, ``compensating``,
    ``undone``, ``stuck``."""
    total_ms: float = 0.0


def tell(
    d: SagaDefinition | None,
    saga: Mapping[str, Any],
    log: Sequence[Mapping[str, Any]],
    now: datetime,
) -> Story:
    """The story of ``saga`` (its row) from its ``log`` rows, as of ``now``."""
    story = Story()
    ended = SagaStatus(saga["status"]).terminal
    if d is not None:
        story.states = {s.name: "pending" for s in d.all_steps}
    open_: dict[tuple[str, str], Span] = {}
    first = log[0]["at"] if log else now
    for row in log:
        at = row["at"]
        messages = _json(row.get("messages")) or {}
        sent = messages.get("sent") or [
            {"type": t, "attempt": None, "payload": None} for t in row["commands"]
        ]
        story.lines.append(
            Line(
                at,
                (at - first).total_seconds() * 1000,
                row["status"],
                row["step"],
                row["event"],
                "; ".join(filter(None, (row["note"], messages.get("unrecorded")))),
                list(row["commands"]),
                messages.get("received"),
                sent,
            )
        )
        if d is None:
            continue
        answered = d.reply_of(row["event"])
        if answered is not None:
            step, _, meaning = answered
            kind = "action" if meaning in ("done", "failed") else "compensation"
            span = open_.pop((step.name, kind), None)
            if span is not None:
                span.end, span.outcome = at, meaning
            story.states[step.name] = OUTCOME_STATE[meaning]
        for command in sent:
            found = d.action_for(command["type"])
            if found is None:
                continue
            step, action = found
            kind = "action" if action is step.action else "compensation"
            earlier = open_.pop((step.name, kind), None)
            if earlier is not None:
                earlier.end, earlier.outcome = at, "re-sent" if kind == "action" else "no answer"
            forward = open_.pop((step.name, "action"), None) if kind == "compensation" else None
            if forward is not None:  # turned back before it answered
                forward.end, forward.outcome = at, "no answer"
            attempt = command.get("attempt") or (earlier.attempt + 1 if earlier else 1)
            span = Span(step.name, kind, command["type"], attempt, at)
            open_[(step.name, kind)] = span
            story.spans.append(span)
            story.states[step.name] = "running" if kind == "action" else "compensating"
    if d is not None:
        members = _json(saga.get("members")) or {}
        for name, member in members.items():  # the current stage, as the engine keeps it
            if name in story.states:
                story.states[name] = STATE_OF_PROGRESS[Progress(member["progress"])]
        if ended:
            for span in open_.values():  # never answered before the saga ended
                span.end, span.outcome = span.end or saga["updated_at"], "no answer"
    last = saga["updated_at"] if ended else now
    story.total_ms = max((last - first).total_seconds() * 1000, 1.0)
    for span in story.spans:
        end = span.end or last
        span.left = 100 * (span.start - first).total_seconds() * 1000 / story.total_ms
        width = 100 * (end - span.start).total_seconds() * 1000 / story.total_ms
        span.width = max(min(width, 100 - span.left), 0.4)
    return story


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a W3C ``traceparent`` (``00-<trace id>-<span id>-<flags>``)."""
    parts = (traceparent or "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def _json(value: Any) -> Any:
    if value is None or isinstance(value, dict | list):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return None
