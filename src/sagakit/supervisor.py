"""Supervised background tasks: a task that fails is restarted with backoff; one that keeps
failing is given up on, and the process is told so (its health check fails and it exits
non-zero, so that whatever runs it starts a fresh one).

A run that lasted ``healthy_after`` seconds before failing counts as a fresh start: only
failures in quick succession add up to ``max_failures``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sagakit.aio import sleep_or_stop

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class RestartPolicy:
    initial_delay: float = 0.2
    """Seconds before the first restart."""
    max_delay: float = 10.0
    """Upper bound of the delay between restarts."""
    max_failures: int = 8
    """Failures in quick succession before giving up (about a minute with the defaults)."""
    healthy_after: float = 60.0
    """A run at least this long resets the failure count."""


@dataclass
class Supervisor:
    """Runs named background tasks until ``stop`` is set; calls ``on_give_up`` (once)
    with the name and last error of a task that failed ``max_failures`` times in a row."""

    stop: asyncio.Event
    on_give_up: Callable[[str, BaseException], None]
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    restarts: dict[str, int] = field(default_factory=dict)
    """Restarts so far, per task (for /metrics)."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, name: str, run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        self.restarts.setdefault(name, 0)
        self.tasks.append(asyncio.create_task(self._keep(name, run), name=name))

    async def wait(self) -> None:
        """Wait for every task to end (after ``stop`` was set)."""
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _keep(self, name: str, run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        failures = 0
        delay = self.policy.initial_delay
        while not self.stop.is_set():
            began = time.monotonic()
            try:
                await run(self.stop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if time.monotonic() - began >= self.policy.healthy_after:
                    failures, delay = 0, self.policy.initial_delay
                failures += 1
                if failures >= self.policy.max_failures:
                    log.critical("%s failed %d times in a row; giving up: %r", name, failures, exc)
                    self.on_give_up(name, exc)
                    return
                log.error("%s failed (%r); restarting in %.1f s", name, exc, delay)
                self.restarts[name] += 1
                await sleep_or_stop(self.stop, delay)
                delay = min(delay * 2, self.policy.max_delay)
            else:
                if not self.stop.is_set():
                    log.warning("%s ended on its own; restarting", name)
                    self.restarts[name] += 1
                    await sleep_or_stop(self.stop, self.policy.initial_delay)
