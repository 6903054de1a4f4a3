"""asyncio helpers shared by every background loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def repeat(
    round: Callable[[], Awaitable[int]], stop: asyncio.Event, *, interval: float, what: str
) -> None:
    """Run ``round`` until ``stop`` is set: again at once while it finds work (it returns
    how much), after ``interval`` when it finds none or fails (logged, never fatal)."""
    while not stop.is_set():
        try:
            done = await round()
        except Exception:
            log.exception("%s loop error; continuing", what)
            done = 0
        if not done:
            await sleep_or_stop(stop, interval)
