"""Forgetting old rows in short batches, in the background."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg

from sagakit.aio import sleep_or_stop
from sagakit.db import Connection

log = logging.getLogger(__name__)

Prune = Callable[[Connection, timedelta, int], Awaitable[int]]
"""Delete up to ``batch`` rows older than a retention; return how many went."""


async def prune_periodically(
    pool: asyncpg.Pool,
    stop: asyncio.Event,
    prune: Prune,
    keep: timedelta,
    *,
    what: str,
    batch: int = 10_000,
    every: float = 600.0,
) -> None:
    """Run ``prune`` every ``every`` seconds, in short batches until little is left (short
    transactions keep the hot path free)."""
    while not stop.is_set():
        removed = batch
        try:
            while removed == batch and not stop.is_set():
                async with pool.acquire(timeout=10) as conn:
                    removed = await prune(conn, keep, batch)
                if removed:
                    log.info("%s: pruned %d older than %s", what, removed, keep)
        except Exception as exc:  # an outage, most likely: the next round will do
            log.warning("%s: pruning failed (%r); next round in %.0f s", what, exc, every)
        await sleep_or_stop(stop, every)
