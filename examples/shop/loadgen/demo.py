"""``sagakit demo``: a few hundred orders through every path of the saga, watched live."""

from __future__ import annotations

import asyncio
import random
import signal
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from examples.shop.audit import AuditReport, audit
from examples.shop.loadgen.client import Placed, ShopClient
from examples.shop.loadgen.observer import Observer
from examples.shop.loadgen.scenario import EXPECTED, PATHS, pick, seed
from examples.shop.loadgen.session import running_shop
from examples.shop.loadgen.stats import Summary
from examples.shop.saga import Flow
from examples.shop.system import DEFAULT_PORTS, SERVICES
from sagakit import Mode
from sagakit.dev import CONSOLE, database_url


@dataclass
class DemoResult:
    mode: Mode
    flow: Flow
    outcomes: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    latency: dict[str, Summary] = field(default_factory=dict)
    overall: Summary | None = None
    unexpected: list[str] = field(default_factory=list)
    examples: dict[str, dict[str, Any]] = field(default_factory=dict)
    """One saga per path, as ``GET /sagas/{id}`` returned it (its state and timeline)."""
    refunded_cents: int = 0
    audit: AuditReport | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode.value,
            "flow": self.flow.value,
            "outcomes": {p: dict(c) for p, c in self.outcomes.items()},
            "latency_ms": {p: asdict(s) for p, s in self.latency.items()},
            "overall_ms": asdict(self.overall) if self.overall else None,
            "unexpected": self.unexpected,
            "refunded_cents": self.refunded_cents,
            "examples": self.examples,
            "check_clean": bool(self.audit and self.audit.clean),
            "violations": self.audit.violations if self.audit else [],
        }

    @property
    def ok(self) -> bool:
        return not self.unexpected and self.audit is not None and self.audit.clean


async def run_demo(
    mode: Mode,
    flow: Flow,
    orders: int,
    *,
    keep_running: bool = False,
    console: Console | None = None,
    rate: float = 60.0,
    seed_value: int = 7,
    ports: dict[str, int] | None = None,
    services: Mapping[str, str] = SERVICES,
) -> DemoResult:
    console = console or Console()
    result = DemoResult(mode, flow)
    rng = random.Random(seed_value)
    ports = dict(ports or DEFAULT_PORTS)
    shop_ctx = running_shop(
        "demo", mode, flow, ports=ports, console_port=min(ports.values()) - 1, services=services
    )
    async with shop_ctx as (info, fleet):
        urls = {name: sp.url for name, sp in fleet.processes.items() if name != CONSOLE}
        console_url = fleet.processes[CONSOLE].url if CONSOLE in fleet.processes else None
        console.print(
            f"[bold]sagakit demo[/] - {flow.value} flow, {mode.value} mode,"
            f" {orders} orders at {rate:g}/s"
        )
        for name, url in urls.items():
            console.print(f"  {name:<13} {url}")
        if console_url:
            console.print(f"  {'console':<13} {console_url}  (watch the sagas live)")
        client = ShopClient(urls)
        shop = await seed(client)
        orders_db = database_url(info.database_url, fleet.settings.database("orders"))
        latencies: dict[str, list[float]] = defaultdict(list)
        chosen: dict[str, str] = {}
        async with Observer(orders_db) as observer:
            with Progress(
                TextColumn("sagas"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            ) as progress:
                task = progress.add_task("sagas", total=orders)
                clock = asyncio.get_running_loop().time
                begin = clock()

                async def one(n: int) -> None:
                    customer, product, qty, path = pick(shop, rng, failures=0.3)
                    # A steady rate, as users would arrive, rather than one burst.
                    await asyncio.sleep(max(0.0, begin + n / rate - clock()))
                    placed: Placed = await client.order(customer, product, qty, path)
                    settled = await asyncio.wait_for(observer.wait(placed.order_id), 120)
                    result.outcomes[path][settled.status] += 1
                    chosen.setdefault(path, placed.order_id)
                    latencies[path].append((settled.settled_at - placed.sent_at) * 1000)
                    status, reason = EXPECTED[path]
                    if settled.status != status or (reason and settled.reason != reason):
                        result.unexpected.append(
                            f"{placed.order_id} ({path}): {settled.status} {settled.reason}"
                        )
                    progress.advance(task)

                await asyncio.gather(*(one(n) for n in range(orders)))
        for path, order_id in chosen.items():  # the saga's id is the order's
            r = await client.http.get(f"{urls.get('orchestrator', urls['order'])}/sagas/{order_id}")
            if r.status_code == 200:
                result.examples[path] = r.json()
        for path, values in latencies.items():
            result.latency[path] = Summary.of(values)
        result.overall = Summary.of([v for vs in latencies.values() for v in vs])
        for cid in (*shop.rich, *shop.poor):
            r = await client.http.get(f"{urls['payment']}/customers/{cid}")
            result.refunded_cents += int(r.json()["refunded_cents"])
        await client.close()
        result.audit = await audit(info.database_url, fleet.settings)
        render(result, console)
        render_examples(result, console)
        if keep_running:
            console.print("\nStill running (API docs at each URL + /docs):")
            for name, url in urls.items():
                console.print(f"  {name:<13} {url}")
            if console_url:
                console.print(f"  {'console':<13} {console_url}  (sagas, dead letters, actions)")
            console.print("Audit again: SAGAKIT_NAMESPACE=demo sagakit check")
            console.print("Ctrl-C stops everything.")
            await _until_interrupted()
    return result


async def _until_interrupted() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def render_examples(result: DemoResult, console: Console) -> None:
    """One saga per path, step by step: what each event sent on, and where the
    compensations ran, with the time since the saga started."""
    console.print("\n[bold]One saga per path, step by step[/] (the console shows them too)")
    for path in PATHS:
        found = result.examples.get(path)
        if found is None:
            continue
        saga, log = found["saga"], found["log"]
        reason = f" ({saga['reason']})" if saga.get("reason") else ""
        console.print(Text(f"{path}: saga {saga['saga_id']} {saga['status']}{reason}", "bold"))
        first = datetime.fromisoformat(log[0]["at"]) if log else None
        for entry in log:
            at = datetime.fromisoformat(entry["at"])
            elapsed = (at - first).total_seconds() * 1000 if first else 0.0
            sent = f" -> {', '.join(entry['commands'])}" if entry["commands"] else ""
            what = f"{entry['status']:<12} {entry['step']:<14} on {entry['event']}{sent}"
            line = f"  {elapsed:6.0f} ms  {what}"
            undoing = entry["status"] in ("COMPENSATING", "FAILED")
            console.print(Text(line, "yellow" if undoing else ""), overflow="fold")


def render(result: DemoResult, console: Console) -> None:
    table = Table(
        title=f"Outcomes ({result.flow.value}, {result.mode.value}), latency from POST to settled"
    )
    for col in ("path", "orders", "CONFIRMED", "CANCELLED", "p50 ms", "p99 ms"):
        table.add_column(col, justify="left" if col == "path" else "right")
    for path in PATHS:
        c, s = result.outcomes.get(path, Counter()), result.latency.get(path)
        table.add_row(
            path,
            str(sum(c.values())),
            str(c["CONFIRMED"]),
            str(c["CANCELLED"]),
            f"{s.p50:.0f}" if s else "-",
            f"{s.p99:.0f}" if s else "-",
        )
    if result.overall:
        o = result.overall
        table.add_row("all", str(o.count), "", "", f"{o.p50:.0f}", f"{o.p99:.0f}", style="bold")
    console.print(table)
    if result.flow is Flow.PAY_FIRST:
        console.print(f"refunded after stock-outs: {result.refunded_cents / 100:.2f}")
    if result.unexpected:
        console.print(f"[red]{len(result.unexpected)} unexpected outcome(s)[/], e.g.")
        for line in result.unexpected[:5]:
            console.print(f"  {line}")
    a = result.audit
    if a is not None:
        if a.clean:
            console.print("[green]sagakit check: invariants hold[/]")
        else:
            console.print(f"[red]sagakit check: {len(a.violations)} violation(s)[/]")
            for line in a.violations[:10]:
                console.print(f"  {line}")
