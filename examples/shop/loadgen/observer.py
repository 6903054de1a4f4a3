"""Watch orders settle without disturbing the services much: one primary-key lookup of the
orders still in flight on the order database every few milliseconds, instead of polling each
order over HTTP.

Latency of an order = its terminal transition's commit time in the order database
(``updated_at``) minus the moment the client sent its POST. Both clocks are this machine's.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class Settled:
    order_id: str
    status: str
    reason: str | None
    settled_at: float


class Observer:
    def __init__(self, orders_url: str, *, interval: float = 0.01) -> None:
        self.url = orders_url
        self.interval = interval
        self.settled: dict[str, Settled] = {}
        self._waiters: dict[str, asyncio.Future[Settled]] = {}
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None

    async def __aenter__(self) -> Observer:
        self._conn = await asyncpg.connect(self.url)
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn:
            await self._conn.close()

    def wait(self, order_id: str) -> asyncio.Future[Settled]:
        fut = self._waiters.get(order_id)
        if fut is None:
            fut = self._waiters[order_id] = asyncio.get_running_loop().create_future()
        return fut

    async def _run(self) -> None:
        assert self._conn is not None
        while True:
            pending = [oid for oid, fut in self._waiters.items() if not fut.done()]
            if pending:
                rows = await self._conn.fetch(
                    "SELECT order_id, status, reason, updated_at FROM orders"
                    " WHERE order_id = ANY($1::text[]) AND status IN ('CONFIRMED', 'CANCELLED')",
                    pending,
                )
                for r in rows:
                    s = Settled(
                        r["order_id"], r["status"], r["reason"], r["updated_at"].timestamp()
                    )
                    self.settled[s.order_id] = s
                    self._waiters[s.order_id].set_result(s)
            await asyncio.sleep(self.interval)
