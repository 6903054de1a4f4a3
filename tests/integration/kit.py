"""Helpers for messaging tests: an `effects` table that shows doubles, a recording handler,
and runners for relays and consumers as background tasks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from pydantic import BaseModel

from sagakit.db import Connection
from sagakit.messaging import (
    ConsumerOptions,
    ConsumerRuntime,
    MessageContext,
    OutboxRelay,
    RetryPolicy,
    Router,
    new_message,
    outbox,
)
from sagakit.messaging.transport import Transport

EFFECTS = """
CREATE TABLE IF NOT EXISTS effects (
    message_id uuid NOT NULL,
    key text NOT NULL,
    seq int NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


class Step(BaseModel):
    seq: int


def recording_router(message_type: str, namespace: str = "") -> Router:
    """A router whose one handler records each message it handles (no unique key, so a
    double would show as two rows). It reads the topic named like the type; ``namespace``
    only places its dead-letter topic."""
    router = Router(namespace)

    @router.handles(message_type, Step, topic=message_type)
    async def record(ctx: MessageContext, step: Step) -> None:
        await ctx.tx.execute(
            "INSERT INTO effects (message_id, key, seq) VALUES ($1, $2, $3)",
            ctx.envelope.message_id,
            ctx.envelope.key,
            step.seq,
        )

    return router


async def create_effects(url: str) -> None:
    conn = await asyncpg.connect(url)
    await conn.execute(EFFECTS)
    await conn.close()


async def enqueue(tx: Connection, topic: str, key: str, seq: int) -> None:
    await outbox.add(tx, new_message(topic, Step(seq=seq), key=key))


async def effects(url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch("SELECT message_id, key, seq FROM effects ORDER BY at"))
    finally:
        await conn.close()


async def wait_for(predicate: Any, *, timeout: float = 60.0, interval: float = 0.05) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running_relay(
    url: str, transport: Transport, **kwargs: Any
) -> AsyncIterator[OutboxRelay]:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    producer = transport.producer()
    await producer.start()
    relay = OutboxRelay(pool, producer, listen_url=url, **kwargs)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield relay
    finally:
        stop.set()
        await task
        await producer.stop()
        await pool.close()


@contextlib.asynccontextmanager
async def running_consumer(
    url: str,
    transport: Transport,
    group: str,
    router: Router,
    *,
    retry: RetryPolicy | None = None,
) -> AsyncIterator[ConsumerRuntime]:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=6)
    options = ConsumerOptions(retry=retry or RetryPolicy(initial_delay=0.01, max_delay=0.05))
    runtime = ConsumerRuntime(
        group=group, router=router, transport=transport, pool=pool, options=options
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(runtime.run(stop, ready))
    await ready.wait()
    try:
        yield runtime
    finally:
        stop.set()
        await task
        await pool.close()
