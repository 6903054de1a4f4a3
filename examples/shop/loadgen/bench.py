"""``sagakit bench``: throughput (closed loop) or latency at a fixed rate (open loop).

Closed loop: ``concurrency`` clients, each placing its next order when the previous one has
settled. Open loop: orders sent at ``rate`` per second on a fixed schedule, whether or not
earlier ones have settled (so queueing shows up in the latency, as it would for users).
Orders sent during the warm-up are not counted. Latency: from the POST being sent to the
order's terminal transition committing (see ``observer``).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from examples.shop.audit import audit
from examples.shop.loadgen.client import ShopClient
from examples.shop.loadgen.observer import Observer, Settled
from examples.shop.loadgen.resources import Sampler
from examples.shop.loadgen.scenario import Shop, pick, seed
from examples.shop.loadgen.session import running_shop
from examples.shop.loadgen.stats import Summary
from examples.shop.saga import Flow
from examples.shop.system import SERVICES
from sagakit import Mode
from sagakit.dev import Fleet, database_url


@dataclass
class BenchResult:
    mode: str
    flow: str
    loop: str
    duration_s: float
    warmup_s: float
    rate: float | None
    concurrency: int | None
    sent: int = 0
    completed: int = 0
    sagas_per_s: float = 0.0
    latency_ms: dict[str, Summary] = field(default_factory=dict)
    cpu_percent: dict[str, float] = field(default_factory=dict)
    rss_max_mb: dict[str, float] = field(default_factory=dict)
    unsettled: int = 0
    published_per_saga: float = 0.0
    """Messages every service's relay published, per order placed (warm-up included)."""
    delivered_per_saga: float = 0.0
    """Messages every consumer handled (one read by three services counts three)."""
    check_clean: bool = False
    violations: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def outcome(s: Settled) -> str:
    return s.status if s.status == "CONFIRMED" else f"CANCELLED ({s.reason})"


async def run_bench(
    mode: Mode,
    flow: Flow,
    *,
    duration: float,
    warmup: float,
    rate: float | None = None,
    concurrency: int = 32,
    failures: float = 0.1,
    ports: dict[str, int] | None = None,
    idle: bool = False,
    services: Mapping[str, str] = SERVICES,
) -> BenchResult:
    result = BenchResult(
        mode.value,
        flow.value,
        "idle" if idle else "open" if rate else "closed",
        duration,
        warmup,
        rate,
        None if rate else concurrency,
    )
    async with running_shop("bench", mode, flow, ports=ports, services=services) as (info, fleet):
        client = ShopClient(
            {n: sp.url for n, sp in fleet.processes.items()}, connections=max(64, concurrency)
        )
        shop = await seed(client, products=50, customers=400)
        orders_db = database_url(info.database_url, fleet.settings.database("orders"))
        sampler = Sampler(_pids(fleet))
        if idle:  # what the stack costs with no saga running
            await asyncio.sleep(warmup)
            sampler.start()
            await asyncio.sleep(duration)
            result.cpu_percent = await sampler.stop(duration)
            result.rss_max_mb = dict(sampler.rss_max_mb)
            await client.close()
            result.check_clean = True
            return result
        async with Observer(orders_db) as observer:
            records = await _drive(client, observer, shop, sampler, result, failures, concurrency)
            await _settle_all(records, result)
        await _count_messages(client, fleet, len(records), result)
        _summarise(records, result)
        await client.close()
        report = await audit(info.database_url, fleet.settings)
        result.check_clean, result.violations = report.clean, report.violations[:20]
    return result


def _pids(fleet: Fleet) -> dict[str, int]:
    pids = {n: sp.proc.pid for n, sp in fleet.processes.items() if sp.proc is not None}
    if fleet.stack.postgres_pid:
        pids["postgres"] = fleet.stack.postgres_pid
    if fleet.stack.broker_pid:
        pids["broker"] = fleet.stack.broker_pid
    pids["load generator"] = os.getpid()
    return pids


Record = tuple[float, str, "asyncio.Future[Settled]"]


async def _drive(
    client: ShopClient,
    observer: Observer,
    shop: Shop,
    sampler: Sampler,
    result: BenchResult,
    failures: float,
    concurrency: int,
) -> list[Record]:
    rng = random.Random(11)
    records: list[Record] = []
    begin = time.time()
    window_start, end = begin + result.warmup_s, begin + result.warmup_s + result.duration_s
    measuring = False

    async def place() -> None:
        customer, product, qty, path = pick(shop, rng, failures=failures)
        placed = await client.order(customer, product, qty, path)
        records.append((placed.sent_at, path, observer.wait(placed.order_id)))

    async def closed_loop_worker() -> None:
        while time.time() < end:
            customer, product, qty, path = pick(shop, rng, failures=failures)
            placed = await client.order(customer, product, qty, path)
            fut = observer.wait(placed.order_id)
            records.append((placed.sent_at, path, fut))
            await fut

    async def watch_window() -> None:
        nonlocal measuring
        await asyncio.sleep(max(0.0, window_start - time.time()))
        sampler.start()
        measuring = True

    watcher = asyncio.create_task(watch_window())
    if result.rate:
        tasks: set[asyncio.Task[None]] = set()
        n = 0
        while (due := begin + n / result.rate) < end:
            await asyncio.sleep(max(0.0, due - time.time()))
            task = asyncio.create_task(place())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        await asyncio.gather(*tasks)
    else:
        await asyncio.gather(*(closed_loop_worker() for _ in range(concurrency)))
    await watcher
    window = min(time.time(), end) - window_start
    result.cpu_percent = await sampler.stop(max(window, 1e-6)) if measuring else {}
    result.rss_max_mb = {k: round(v, 1) for k, v in sampler.rss_max_mb.items()}
    return records


async def _settle_all(records: list[Record], result: BenchResult) -> None:
    futures = [f for _, _, f in records]
    _, pending = await asyncio.wait(futures, timeout=60) if futures else (set(), set())
    result.unsettled = len(pending)


async def _count_messages(
    client: ShopClient, fleet: Fleet, orders: int, result: BenchResult
) -> None:
    """From each process's own counters (``/health``), once every order has settled."""
    health = [(await client.http.get(f"{p.url}/health")).json() for p in fleet.processes.values()]
    if orders:
        result.published_per_saga = round(sum(h["published"] for h in health) / orders, 2)
        result.delivered_per_saga = round(sum(h["handled"] for h in health) / orders, 2)


def _summarise(records: list[Record], result: BenchResult) -> None:
    if not records:
        return
    begin = min(sent for sent, _, _ in records)
    start, end = begin + result.warmup_s, begin + result.warmup_s + result.duration_s
    settled = [(sent, f.result()) for sent, _, f in records if f.done()]
    counted = [(sent, s) for sent, s in settled if start <= sent < end]
    result.sent = sum(1 for sent, _, _ in records if start <= sent < end)
    result.completed = sum(1 for _, s in settled if start <= s.settled_at < end)
    result.sagas_per_s = round(result.completed / result.duration_s, 1)
    by_outcome: dict[str, list[float]] = defaultdict(list)
    for sent, done in counted:
        by_outcome[outcome(done)].append((done.settled_at - sent) * 1000)
    result.latency_ms = {k: Summary.of(v) for k, v in sorted(by_outcome.items())}
    result.latency_ms["all"] = Summary.of([v for vs in by_outcome.values() for v in vs])
