"""An end-to-end smoke check of the stack and the messaging core: messages written through
the outbox of one database are relayed to the broker and handled once through the inbox."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

import asyncpg
from pydantic import BaseModel

from sagakit.config import Settings, database_url
from sagakit.db import MigrationSet, migrate
from sagakit.devstack import StackInfo
from sagakit.messaging import (
    ConsumerRuntime,
    MessageContext,
    OutboxRelay,
    Router,
    new_message,
    outbox,
)
from sagakit.messaging.transport.kafka import KafkaOptions, KafkaTransport

TOPIC = "order.created"


class Ping(BaseModel):
    n: int


@dataclass(frozen=True)
class SmokeResult:
    sent: int
    handled: int
    seconds: float


async def run_smoke(info: StackInfo, settings: Settings, *, messages: int = 100) -> SmokeResult:
    url = database_url(info.database_url, settings.databases[0])
    conn = await asyncpg.connect(url)
    await migrate(conn, MigrationSet.from_package("messaging", "sagakit.messaging"))
    transport = KafkaTransport(KafkaOptions(bootstrap=info.kafka_bootstrap))
    group = f"smoke-{uuid.uuid4().hex[:8]}"
    run_id = uuid.uuid4().hex[:8]
    seen: set[int] = set()
    all_seen = asyncio.Event()
    router = Router()

    @router.handles(TOPIC, Ping)
    async def handle(ctx: MessageContext, ping: Ping) -> None:
        if ctx.envelope.correlation_id == run_id:
            seen.add(ping.n)
            if len(seen) == messages:
                all_seen.set()

    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    producer = transport.producer()
    await producer.start()
    stop, ready = asyncio.Event(), asyncio.Event()
    runtime = ConsumerRuntime(group=group, router=router, transport=transport, pool=pool)
    tasks = [
        asyncio.create_task(OutboxRelay(pool, producer, listen_url=url).run(stop)),
        asyncio.create_task(runtime.run(stop, ready)),
    ]
    await ready.wait()
    began = time.monotonic()
    try:
        async with conn.transaction():
            await outbox.add(
                conn,
                *(
                    new_message(TOPIC, Ping(n=n), key=f"smoke-{n}", correlation_id=run_id)
                    for n in range(messages)
                ),
            )
        await asyncio.wait_for(all_seen.wait(), 60)
        elapsed = time.monotonic() - began
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await producer.stop()
        await pool.close()
        await conn.close()
    return SmokeResult(sent=messages, handled=len(seen), seconds=elapsed)
