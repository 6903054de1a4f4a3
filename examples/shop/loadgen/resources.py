"""CPU and memory of the processes under test, sampled while the benchmark runs."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import psutil


def _tree(pid: int, *, children: bool = True) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)] if children else [root]
    except psutil.Error:
        return []


def _cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


@dataclass
class Sampler:
    """Per named process tree (a service, PostgreSQL with its backends, the broker). Trees
    named in ``alone`` are measured without their children (the load generator, whose
    children are the services)."""

    pids: dict[str, int]
    alone: frozenset[str] = frozenset({"load generator"})
    interval: float = 0.5
    rss_max_mb: dict[str, float] = field(default_factory=dict)
    _cpu_start: dict[str, float] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._cpu_start = {n: _cpu_seconds(self._procs(n)) for n in self.pids}
        self._task = asyncio.create_task(self._sample())

    async def stop(self, elapsed: float) -> dict[str, float]:
        """CPU of each tree over the window, in percent of one core."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return {
            n: round(100 * (_cpu_seconds(self._procs(n)) - self._cpu_start[n]) / elapsed, 1)
            for n in self.pids
        }

    def _procs(self, name: str) -> list[psutil.Process]:
        return _tree(self.pids[name], children=name not in self.alone)

    async def _sample(self) -> None:
        while True:
            for name, pid in self.pids.items():
                rss = 0
                # PostgreSQL backends share the server's memory: count the postmaster only.
                for p in _tree(pid, children=False) if name == "postgres" else self._procs(name):
                    with contextlib.suppress(psutil.Error):
                        rss += p.memory_info().rss
                self.rss_max_mb[name] = max(self.rss_max_mb.get(name, 0.0), rss / 2**20)
            await asyncio.sleep(self.interval)
