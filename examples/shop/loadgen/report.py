"""Rich tables for benchmark results."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from examples.shop.loadgen.bench import BenchResult


def render_bench(r: BenchResult, console: Console) -> None:
    how = f"open loop at {r.rate:g}/s" if r.rate else f"closed loop, {r.concurrency} clients"
    if r.loop == "idle":
        how = "idle (no orders)"
    console.print(
        f"[bold]{r.flow}, {r.mode}[/], {how}:"
        f" {r.duration_s:g} s measured after {r.warmup_s:g} s warm-up"
    )
    console.print(
        f"sent {r.sent}, completed {r.completed}: [bold]{r.sagas_per_s:g} sagas/s[/]"
        + (f", {r.unsettled} never settled" if r.unsettled else "")
    )
    console.print(
        f"messages per saga: {r.published_per_saga:g} published, {r.delivered_per_saga:g} delivered"
    )
    lat = Table(title="latency, POST sent -> order settled (ms)")
    for col in ("outcome", "count", "p50", "p90", "p99", "max"):
        lat.add_column(col, justify="left" if col == "outcome" else "right")
    for name, s in r.latency_ms.items():
        lat.add_row(name, str(s.count), *(f"{v:.1f}" for v in (s.p50, s.p90, s.p99, s.max)))
    console.print(lat)
    res = Table(title="resources during the measured window")
    for col in ("process", "CPU % of a core", "max RSS MB"):
        res.add_column(col, justify="left" if col == "process" else "right")
    for name, cpu in r.cpu_percent.items():
        res.add_row(name, f"{cpu:.0f}", f"{r.rss_max_mb.get(name, 0):.0f}")
    console.print(res)
    verdict = "[green]invariants hold[/]" if r.check_clean else "[red]violations[/]"
    console.print(f"sagakit check: {verdict}")
    for v in r.violations:
        console.print(f"  {v}")
