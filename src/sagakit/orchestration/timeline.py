"""Sagas as text for a terminal: a listing, and one saga's timeline."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def render_list(found: tuple[Sequence[Any], Mapping[str, int]]) -> str:
    rows, counts = found
    lines = ["  ".join(f"{status} {n}" for status, n in sorted(counts.items())) or "no sagas"]
    for r in rows:
        parked = f"  PARKED: {r['parked']}" if r["parked"] else ""
        reason = f"  ({r['reason']})" if r["reason"] else ""
        lines.append(
            f"{r['saga_id']}  {r['definition']:<12} {r['status']:<12} step {r['step']}"
            f" attempt {r['attempt']}  {r['updated_at']:%Y-%m-%d %H:%M:%S}{reason}{parked}"
        )
    return "\n".join(lines)


def render_timeline(saga: Any, log: Sequence[Any]) -> str:
    """State, current step, then one line per transition with the time since the start."""
    current = log[-1]["step"] if log else saga["step"]
    lines = [
        f"saga {saga['saga_id']} ({saga['definition']} v{saga['definition_version']})",
        f"  status  {saga['status']}" + (f" ({saga['reason']})" if saga["reason"] else ""),
        f"  step    {current} (attempt {saga['attempt']})",
    ]
    members = json.loads(saga["members"]) if saga["members"] else {}
    if len(members) > 1 or (members and next(iter(members)) != current):
        each = [f"{n} {m['progress']} (attempt {m['attempt']})" for n, m in members.items()]
        lines.append(f"  members {', '.join(each)}")
    if saga["parked"]:
        lines.append(f"  parked  {saga['parked']}")
    lines.append("  timeline")
    first = log[0]["at"] if log else None
    for entry in log:
        elapsed = (entry["at"] - first).total_seconds() * 1000 if first else 0.0
        sent = f" -> {', '.join(entry['commands'])}" if entry["commands"] else ""
        note = f"  {entry['note']}" if entry["note"] else ""
        lines.append(
            f"  +{elapsed:8.0f} ms  {entry['status']:<12} {entry['step']:<16}"
            f" on {entry['event']}{sent}{note}"
        )
    return "\n".join(lines)
