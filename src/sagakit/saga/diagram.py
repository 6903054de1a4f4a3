"""A Mermaid flowchart of a saga definition: forward steps, failure edges, compensations."""

from __future__ import annotations

from sagakit.saga.definition import SagaDefinition, StepKind


def mermaid(d: SagaDefinition, *, started_by: str = "start") -> str:
    lines = ["flowchart TD", f"    start([{started_by}])"]
    steps = d.steps
    comp = [i for i, s in enumerate(steps) if s.compensation is not None]

    def undo_target(below: int) -> str:
        """Node that undoes the highest compensatable step at or below ``below``."""
        candidates = [i for i in comp if i <= below]
        return f"u{candidates[-1]}" if candidates else "failed"

    for i, s in enumerate(steps):
        if s.action is None:
            continue
        tag = {StepKind.PIVOT: " (pivot)", StepKind.RETRIABLE: " (retried)"}.get(s.kind, "")
        lines.append(f'    s{i}["{s.name}{tag}<br/><code>{s.action.command}</code>"]')
    for i in comp:
        c = steps[i].compensation
        assert c is not None
        lines.append(f'    u{i}["undo {steps[i].name}<br/><code>{c.command}</code>"]')
    lines += ["    done([COMPLETED])", "    failed([FAILED])"]

    forward = [i for i, s in enumerate(steps) if s.action is not None]
    lines.append(f"    start --> s{forward[0]}")
    for n, i in enumerate(forward):
        s = steps[i]
        assert s.action is not None
        nxt = f"s{forward[n + 1]}" if n + 1 < len(forward) else "done"
        lines.append(f"    s{i} -- {s.action.done} --> {nxt}")
        for failure in s.failure:
            lines.append(f"    s{i} -- {failure} --> {undo_target(i - 1)}")
        if s.kind is not StepKind.RETRIABLE:
            lines.append(f"    s{i} -. timeout .-> {undo_target(i)}")
    for i in comp:
        c = steps[i].compensation
        assert c is not None
        lines.append(f"    u{i} -- {c.done} --> {undo_target(i - 1)}")
    return "\n".join(lines) + "\n"
