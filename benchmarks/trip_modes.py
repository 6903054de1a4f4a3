"""What each mode costs: the trip saga orchestrated, then choreographed from the same
definition, back to back on one stack (a pair measured in one run).

    .venv/bin/python benchmarks/trip_modes.py [--rate 20] [--seconds 20]

Starts the dev stack (embedded PostgreSQL and broker unless configured) and, per mode, the
trip's four services as processes in a fresh namespace; places trips open-loop at ``rate``
per second (one in five asks for a limousine, which no agency has: those compensate), waits
for every saga to end, and reports from the services themselves:

- messages published per saga (every service's outbox relay) and deliveries per saga
  (every consumer's handled messages: a message read by three services counts three);
- saga latency p50/p99: start to end as the tracking service recorded it;
- sagas/s completed over the run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the examples

from examples.trip.system import SERVICES

from sagakit import Mode, Settings
from sagakit.dev import DevStack, Fleet, database_url
from sagakit.devstack.processes import free_port


def trip(limousine: bool) -> dict[str, Any]:
    return {
        "traveller": "Ada Lovelace",
        "origin": "LHR",
        "destination": "LIS",
        "depart": "2030-06-01",
        "nights": 3,
        "car_class": "limousine" if limousine else "compact",
    }


async def run_mode(stack: Any, mode: Mode, rate: float, seconds: float, home: Path) -> dict:
    settings = Settings(namespace=f"bench{uuid.uuid4().hex[:6]}", session_timeout_ms=3000)
    fleet = Fleet(
        stack,
        settings,
        SERVICES,
        {name: free_port() for name in SERVICES},
        mode=mode,
        log_dir=home / f"logs-{mode.value}",
    )
    await fleet.start(timeout=90)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            url = f"{fleet.url('trips')}/sagas/trip/start"
            n = int(rate * seconds)
            began = time.perf_counter()
            pending = []
            for i in range(n):
                delay = began + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                pending.append(asyncio.create_task(client.post(url, json=trip(i % 5 == 4))))
            answers = await asyncio.gather(*pending)
            assert all(r.status_code == 202 for r in answers), {r.status_code for r in answers}
            ids = [r.json()["saga_id"] for r in answers]
            (agency,) = [s for s in fleet.declared() if s.name == "trips"]
            url_db = database_url(stack.database_url, settings.database(agency.database))
            conn = await asyncpg.connect(url_db)
            try:
                while True:
                    left = await conn.fetchval(
                        "SELECT count(*) FROM sagas WHERE status NOT IN ('COMPLETED', 'FAILED')"
                    )
                    done = await conn.fetchval("SELECT count(*) FROM sagas")
                    if done >= len(ids) and left == 0:
                        break
                    await asyncio.sleep(0.2)
                finished = time.perf_counter()
                rows = await conn.fetch(
                    "SELECT status, extract(epoch FROM updated_at) - started_at AS took FROM sagas"
                )
            finally:
                await conn.close()
            health = [(await client.get(f"{fleet.url(p)}/health")).json() for p in fleet.processes]
    finally:
        fleet.stop()
    took = sorted(float(r["took"]) * 1000 for r in rows)
    quantiles = statistics.quantiles(took, n=100)
    return {
        "mode": mode.value,
        "sagas": len(rows),
        "failed": sum(1 for r in rows if r["status"] == "FAILED"),
        "published_per_saga": sum(h["published"] for h in health) / len(rows),
        "delivered_per_saga": sum(h["handled"] for h in health) / len(rows),
        "p50_ms": quantiles[49],
        "p99_ms": quantiles[98],
        "sagas_per_s": len(rows) / (finished - began),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="trip-bench-"))
    dev = DevStack(replace(Settings.from_env(), home=home))
    stack = dev.up(timeout=60)
    try:
        results = [
            asyncio.run(run_mode(stack, mode, args.rate, args.seconds, home)) for mode in Mode
        ]
    finally:
        dev.down(wipe=True)
    cols = list(results[0])
    print(" | ".join(cols))
    for r in results:
        print(" | ".join(f"{r[c]:.1f}" if isinstance(r[c], float) else str(r[c]) for c in cols))
    o, c = results
    ratios = {
        k: c[k] / o[k] for k in ("published_per_saga", "delivered_per_saga", "p50_ms", "p99_ms")
    }
    print("choreography / orchestration: " + ", ".join(f"{k} x{v:.2f}" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
