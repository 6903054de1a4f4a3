"""Traces: the trip's four services as processes, each exporting its spans with the
OpenTelemetry SDK's console exporter (into its log), configured by the standard OTEL_*
variables alone. One saga's spans, from every service, share one trace id and form one tree:
its start, each handler, each relay publish, the compensations."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from sagakit import Mode
from sagakit.dev import StackInfo
from tests.e2e.conftest import trip_fleet
from tests.e2e.test_trip import Agency, request


def spans_in(log: Path) -> list[dict[str, Any]]:
    """The spans the console exporter wrote among the log lines."""
    text, out, decoder = log.read_text(errors="replace"), [], json.JSONDecoder()
    pos = 0
    while (start := text.find("\n{", pos)) != -1:
        try:
            doc, end = decoder.raw_decode(text, start + 1)
        except json.JSONDecodeError:
            pos = start + 1
            continue
        if isinstance(doc, dict) and "context" in doc:
            out.append(doc)
        pos = end
    return out


@pytest.mark.parametrize("mode", list(Mode), ids=[m.value for m in Mode])
async def test_one_saga_is_one_trace_across_every_service(
    mode: Mode, stack: StackInfo, tmp_path: Path
) -> None:
    exporting = {"OTEL_TRACES_EXPORTER": "console", "OTEL_BSP_SCHEDULE_DELAY": "100"}
    fleet = trip_fleet(stack, mode, tmp_path, exporting)
    await fleet.start(timeout=90)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            agency = Agency(fleet, client)
            saga_id = await agency.book(request(car_class="limousine"))  # with compensations
            assert (await agency.settled(saga_id))["saga"]["status"] == "FAILED"
            await asyncio.sleep(1.5)  # the exporters' batches go out
    finally:
        fleet.stop()
    spans = {name: spans_in(sp.log) for name, sp in fleet.processes.items()}
    starts = [s for s in spans["trips"] if s["name"] == "start trip"]
    assert len(starts) == 1, [s["name"] for s in spans["trips"]]
    trace_id = starts[0]["context"]["trace_id"]
    mine = {
        name: [s for s in found if s["context"]["trace_id"] == trace_id]
        for name, found in spans.items()
    }
    for name in ("trips", "flight", "hotel", "car"):
        handled = [s["name"] for s in mine[name] if s["name"].startswith("handle ")]
        assert handled, (
            f"{name} has no span in the saga's trace: {[s['name'] for s in spans[name]]}"
        )
    every = [s for found in mine.values() for s in found]
    ids = {s["context"]["span_id"] for s in every}
    roots = [s for s in every if s["parent_id"] is None]
    # One root: the start, or the HTTP request it was made in where FastAPI traces those.
    assert len(roots) == 1 and roots[0]["name"] in ("start trip", "POST /sagas/trip/start")
    orphans = [s["name"] for s in every if s["parent_id"] and s["parent_id"] not in ids]
    assert not orphans, f"spans whose parent is not in the trace: {orphans}"
    names = {s["name"] for s in every}
    assert any(n.startswith("publish ") for n in names), names
    cancel = "handle flight.cancel" if mode is Mode.ORCHESTRATION else "run flight.cancel"
    assert cancel in names, names  # the compensation is in the trace too
