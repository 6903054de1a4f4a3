"""Stuck-saga detection: an order still PENDING after ``SAGAKIT_STUCK_AFTER_S`` seconds
(default 60) is reported in the log, counted in ``/health`` and ``/metrics``, and listed
by ``GET /orders?stuck=true``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from sagakit import ConfigError, Runtime

log = logging.getLogger(__name__)

STUCK = "status = 'PENDING' AND created_at < now() - make_interval(secs => ${})"
"""SQL condition for a stuck order; format it with the number of the parameter holding the
deadline in seconds."""


def stuck_after() -> float:
    raw = os.environ.get("SAGAKIT_STUCK_AFTER_S", "60")
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"SAGAKIT_STUCK_AFTER_S={raw!r} is not a number") from None


async def watch(rt: Runtime, stop: asyncio.Event, *, interval: float = 5.0) -> None:
    limit = rt.extra["stuck_after"] = stuck_after()
    rt.extra["stuck_orders"] = 0
    while not stop.is_set():
        try:
            async with rt.pool.acquire() as conn:
                where = STUCK.format(1)
                count = await conn.fetchval(f"SELECT count(*) FROM orders WHERE {where}", limit)
                if count:
                    rows = await conn.fetch(
                        f"SELECT order_id FROM orders WHERE {where} ORDER BY created_at LIMIT 20",
                        limit,
                    )
                    sample = [r["order_id"] for r in rows]
                    log.warning("%d order(s) stuck for over %.0f s, e.g. %s", count, limit, sample)
            rt.extra["stuck_orders"] = int(count)
        except Exception:
            log.exception("stuck-order check failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
