"""A Mermaid flowchart of a saga definition: forward steps, failure edges, compensations.
A parallel group is a subgraph whose members join before the next stage."""

from __future__ import annotations

from sagakit.saga.definition import Parallel, SagaDefinition, Step, StepKind


def mermaid(d: SagaDefinition, *, started_by: str = "start") -> str:
    lines = ["flowchart TD", f"    start([{started_by}])"]
    stages = d.stages
    grouped = [isinstance(s, Parallel) for s in d.steps]
    undoable = [i for i, st in enumerate(stages) if any(s.compensation for s in st)]
    forward = [i for i, st in enumerate(stages) if st[0].action is not None]

    def node(i: int, j: int, prefix: str = "s") -> str:
        return f"{prefix}{i}_{j}" if grouped[i] else f"{prefix}{i}"

    def entry(i: int) -> str:
        return f"g{i}" if grouped[i] else f"s{i}"

    def undo_target(below: int) -> str:
        """Node that undoes the highest compensatable stage at or below ``below``."""
        candidates = [i for i in undoable if i <= below]
        if not candidates:
            return "failed"
        return f"ug{candidates[-1]}" if grouped[candidates[-1]] else f"u{candidates[-1]}"

    def label(s: Step) -> str:
        tag = {StepKind.PIVOT: " (pivot)", StepKind.RETRIABLE: " (retried)"}.get(s.kind, "")
        assert s.action is not None
        return f'"{s.name}{tag}<br/><code>{s.action.command}</code>"'

    for i in forward:
        if grouped[i]:
            lines.append(f'    subgraph g{i} ["{d.stage_name(i)} (parallel)"]')
            lines += [f"        {node(i, j)}[{label(s)}]" for j, s in enumerate(stages[i])]
            lines += ["    end", f"    j{i}((all))"]
        else:
            lines.append(f"    s{i}[{label(stages[i][0])}]")
    for i in undoable:
        members = [(j, s) for j, s in enumerate(stages[i]) if s.compensation is not None]
        if grouped[i]:
            lines.append(f'    subgraph ug{i} ["undo {d.stage_name(i)}"]')
        for j, s in members:
            assert s.compensation is not None
            pad = "        " if grouped[i] else "    "
            code = s.compensation.command
            lines.append(f'{pad}{node(i, j, "u")}["undo {s.name}<br/><code>{code}</code>"]')
        if grouped[i]:
            lines += ["    end", f"    uj{i}((all))"]
    lines += ["    done([COMPLETED])", "    failed([FAILED])"]

    lines.append(f"    start --> {entry(forward[0])}")
    for n, i in enumerate(forward):
        nxt = entry(forward[n + 1]) if n + 1 < len(forward) else "done"
        for j, s in enumerate(stages[i]):
            assert s.action is not None
            lines.append(
                f"    {node(i, j)} -- {s.action.done} --> {f'j{i}' if grouped[i] else nxt}"
            )
            # A member's failure undoes its partners that succeeded, then earlier stages.
            back = undo_target(i if grouped[i] else i - 1)
            lines += [f"    {node(i, j)} -- {f} --> {back}" for f in s.failure]
            if s.kind is not StepKind.RETRIABLE:
                lines.append(f"    {node(i, j)} -. timeout .-> {undo_target(i)}")
        if grouped[i]:
            lines.append(f"    j{i} --> {nxt}")
    for i in undoable:
        for j, s in enumerate(stages[i]):
            if s.compensation is not None:
                after = f"uj{i}" if grouped[i] else undo_target(i - 1)
                lines.append(f"    {node(i, j, 'u')} -- {s.compensation.done} --> {after}")
        if grouped[i]:
            lines.append(f"    uj{i} --> {undo_target(i - 1)}")
    return "\n".join(lines) + "\n"
