"""The flow diagram of a definition, laid out for SVG: a column per stage, left to right,
the steps of a parallel group stacked; each box in its step's state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sagakit.saga import SagaDefinition, StepKind

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 196, 78, 30, 14, 12


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    name: str
    command: str
    compensation: str
    kind: str
    state: str
    current: bool


@dataclass(frozen=True)
class Arrow:
    x1: int
    y1: int
    x2: int
    y2: int


@dataclass(frozen=True)
class Drawing:
    boxes: tuple[Box, ...]
    arrows: tuple[Arrow, ...]
    width: int
    height: int
    box_w: int = BOX_W
    box_h: int = BOX_H


def draw(d: SagaDefinition, states: Mapping[str, str], current: int | None) -> Drawing:
    """``d``'s stages with each step's state; ``current``: the stage the saga is at (None
    when it ended)."""
    tallest = max(len(stage) for stage in d.stages)
    height = PAD * 2 + tallest * BOX_H + (tallest - 1) * GAP_Y
    boxes: list[Box] = []
    arrows: list[Arrow] = []
    previous: list[tuple[int, int]] = []  # right-hand midpoints of the last column
    for i, stage in enumerate(d.stages):
        x = PAD + i * (BOX_W + GAP_X)
        column = len(stage) * BOX_H + (len(stage) - 1) * GAP_Y
        top = (height - column) // 2
        lefts = []
        for j, step in enumerate(stage):
            y = top + j * (BOX_H + GAP_Y)
            kind = {StepKind.PIVOT: "pivot", StepKind.RETRIABLE: "retried"}.get(step.kind, "")
            boxes.append(
                Box(
                    x,
                    y,
                    step.name,
                    step.action.command if step.action else "local transaction",
                    step.compensation.command if step.compensation else "",
                    kind,
                    states.get(step.name, "pending"),
                    current == i,
                )
            )
            lefts.append((x, y + BOX_H // 2))
        for px, py in previous:
            for lx, ly in lefts:
                arrows.append(Arrow(px, py, lx - 4, ly))
        previous = [(x + BOX_W, ly) for _, ly in lefts]
    width = PAD * 2 + len(d.stages) * BOX_W + (len(d.stages) - 1) * GAP_X
    return Drawing(tuple(boxes), tuple(arrows), width, height)
