"""The README's demo and the benchmark, run as a user would (small sizes), against the test
session's stack."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from sagakit.devstack import StackInfo
from tests.e2e.conftest import free_port_base


async def run_cli(
    stack: StackInfo, *args: str, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Run the shop's command (``python -m examples.shop``) against the test session's stack."""
    full_env = {
        **os.environ,
        "SAGAKIT_DATABASE_URL": stack.database_url,
        "SAGAKIT_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "SAGAKIT_SESSION_TIMEOUT_MS": "3000",
        **(env or {}),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "examples.shop",
        *args,
        env=full_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 240)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.mark.parametrize(
    ("mode", "flow"), [("orchestration", "reserve-first"), ("choreography", "pay-first")]
)
async def test_demo_exercises_every_path(
    stack: StackInfo, tmp_path: Path, mode: str, flow: str
) -> None:
    report = tmp_path / "demo.json"
    code, out = await run_cli(
        stack,
        "demo",
        "--mode",
        mode,
        "--flow",
        flow,
        "--orders",
        "60",
        "--json",
        str(report),
        "--port-base",
        str(free_port_base(-1, 1, 2, 3)),  # the console gets the port before
    )
    assert code == 0, out
    result = json.loads(report.read_text())
    outcomes = result["outcomes"]
    assert set(outcomes) == {"success", "out of stock", "declined payment"}
    assert outcomes["success"] == {"CONFIRMED": outcomes["success"]["CONFIRMED"]}
    assert set(outcomes["out of stock"]) == {"CANCELLED"}
    assert set(outcomes["declined payment"]) == {"CANCELLED"}
    assert sum(sum(c.values()) for c in outcomes.values()) == 60
    assert result["unexpected"] == [] and result["check_clean"] is True
    if flow == "pay-first":
        assert result["refunded_cents"] > 0, "pay-first refunds the stock-outs"
    else:
        assert result["refunded_cents"] == 0, "reserve-first reserves before it charges"
    assert result["overall_ms"]["count"] == 60 and result["overall_ms"]["p50"] > 0
    assert result["mode"] == mode and result["flow"] == flow
    assert "invariants hold" in out and f"Outcomes ({flow}, {mode})" in out
    # One saga per path, step by step, printed after the table: where compensations ran.
    examples = result["examples"]
    assert {p: e["saga"]["status"] for p, e in examples.items()} == {
        "success": "COMPLETED",
        "out of stock": "FAILED",
        "declined payment": "FAILED",
    }
    declined = [c for e in examples["declined payment"]["log"] for c in e["commands"]]
    assert declined == (
        ["inventory.reserve", "payment.process", "inventory.release", "order.cancel"]
        if flow == "reserve-first"
        else ["payment.process", "order.cancel"]
    )
    for path, e in examples.items():
        assert f"{path}: saga {e['saga']['saga_id']}" in out
    assert "watch the sagas live" in out


async def test_bench_smoke_reports_sane_figures(stack: StackInfo, tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    code, out = await run_cli(
        stack,
        "bench",
        "--duration",
        "3",
        "--warmup",
        "1",
        "--concurrency",
        "4",
        "--json",
        str(report),
        "--port-base",
        str(free_port_base(1, 2, 3)),
    )
    assert code == 0, out
    r = json.loads(report.read_text())
    assert r["loop"] == "closed" and r["completed"] > 0 and r["sagas_per_s"] > 0
    overall = r["latency_ms"]["all"]
    assert overall["count"] > 0 and 0 < overall["p50"] <= overall["p99"] <= overall["max"]
    assert {"order", "inventory", "payment", "orchestrator"} <= set(r["cpu_percent"])
    assert all(v > 0 for v in r["rss_max_mb"].values())
    assert r["check_clean"] is True and r["unsettled"] == 0
