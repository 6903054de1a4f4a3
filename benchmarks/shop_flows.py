"""What each flow costs in each mode: the shop's bench run four times back to back on one
stack (reserve-first and pay-first, each orchestrated and choreographed), figures measured
in one run so that they compare.

    .venv/bin/python benchmarks/shop_flows.py [--rate 20] [--seconds 20] [--failures 0.1]

Each run is ``python -m examples.shop bench --rate R --duration S --mode M --flow F`` in a
fresh namespace: open loop, a share of orders failing (half out of stock, half declined),
5 s of warm-up not counted. Per run: messages published and delivered per saga (the
services' own counters), latency from ``POST /orders`` to the order's final state, the CPU
of every process over the measured window, and the shop's audit.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the examples

from examples.shop.loadgen.bench import BenchResult, run_bench
from examples.shop.saga import Flow

from sagakit import Mode
from sagakit.config import Settings
from sagakit.dev import DevStack


def row(r: BenchResult) -> list[str]:
    lat = r.latency_ms["all"]
    cpu = sum(v for k, v in r.cpu_percent.items() if k != "load generator")
    return [
        r.flow,
        r.mode,
        f"{r.published_per_saga:.1f}",
        f"{r.delivered_per_saga:.1f}",
        f"{lat.p50:.0f} ms",
        f"{lat.p99:.0f} ms",
        f"{cpu:.0f} %",
        f"{r.sagas_per_s:g}",
        "clean" if r.check_clean and not r.unsettled else "VIOLATIONS",
    ]


async def main(rate: float, seconds: float, failures: float) -> None:
    results = []
    for flow in Flow:
        for mode in Mode:
            results.append(
                await run_bench(
                    mode, flow, duration=seconds, warmup=5.0, rate=rate, failures=failures
                )
            )
    head = [
        "flow",
        "mode",
        "published/saga",
        "delivered/saga",
        "p50",
        "p99",
        "CPU (all but load)",
        "sagas/s",
        "audit",
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for r in results:
        print("| " + " | ".join(row(r)) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--failures", type=float, default=0.1)
    args = parser.parse_args()
    stack = DevStack(Settings.from_env())
    was_up = stack.status() is not None
    stack.up()  # once for the four runs (each run would start and stop its own)
    try:
        asyncio.run(main(args.rate, args.seconds, args.failures))
    finally:
        if not was_up:
            stack.down()
