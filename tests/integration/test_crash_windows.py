"""Kill a process inside its crash window and prove nothing is lost or doubled."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import asyncpg

from sagakit.devstack import StackInfo
from sagakit.messaging.transport import OutgoingRecord
from sagakit.messaging.transport.kafka import KafkaTransport
from tests.conftest import unique
from tests.contract.transport import drain
from tests.integration.kit import (
    create_effects,
    effects,
    enqueue,
    recording_router,
    running_consumer,
    running_relay,
    wait_for,
)
from tests.integration.test_runtime import record

ROOT = Path(__file__).resolve().parents[2]


async def run_worker(module: str, *args: str) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", f"tests.integration.workers.{module}", *args, cwd=ROOT, env=env
    )
    async with asyncio.timeout(60):
        return await proc.wait()


async def test_consumer_killed_between_db_commit_and_offset_commit(
    fresh_db: str, kafka: KafkaTransport, stack: StackInfo
) -> None:
    topic, group = unique("crash"), unique("g")
    await kafka.ensure_topics([topic], 3)
    await create_effects(fresh_db)
    async with kafka.producer() as producer:
        await producer.send_many(
            [record(topic, f"k{n % 5}", n) for n in range(40)]
            + [OutgoingRecord(topic, b"k0", b"poison")]
        )
    assert (
        await run_worker("crashing_consumer", fresh_db, stack.kafka_bootstrap, topic, group) == 137
    )
    handled_before_crash = len(await effects(fresh_db))
    assert handled_before_crash > 0, "the worker committed to the database before dying"

    async with running_consumer(fresh_db, kafka, group, recording_router(topic)) as rt:

        async def all_accounted() -> bool:
            return len(await effects(fresh_db)) == 40 and rt.stats.duplicates > 0

        await wait_for(all_accounted, timeout=90)
        await asyncio.sleep(0.5)
    rows = await effects(fresh_db)
    assert sorted(r["seq"] for r in rows) == list(range(40)), "each handled exactly once"
    assert rt.stats.duplicates >= handled_before_crash - 1
    conn = await asyncpg.connect(fresh_db)
    dead = await conn.fetchval(
        "SELECT count(*) FROM sagakit_outbox WHERE topic = 'sagakit.dead-letters'"
    )
    await conn.close()
    assert dead == 1, "the poison record is dead-lettered once, not once per delivery"


async def test_relay_killed_between_publish_and_delete(
    fresh_db: str, kafka: KafkaTransport, stack: StackInfo
) -> None:
    topic, group = unique("crash"), unique("g")
    await kafka.ensure_topics([topic], 3)
    await create_effects(fresh_db)
    conn = await asyncpg.connect(fresh_db)
    for n in range(30):
        async with conn.transaction():
            await enqueue(conn, topic, f"k{n % 4}", n)

    assert await run_worker("crashing_relay", fresh_db, stack.kafka_bootstrap) == 137
    assert await conn.fetchval("SELECT count(*) FROM sagakit_outbox") == 30, "rows kept"

    async with (
        running_relay(fresh_db, kafka) as relay,
        running_consumer(fresh_db, kafka, group, recording_router(topic)) as rt,
    ):

        async def all_accounted() -> bool:
            return rt.stats.handled + rt.stats.duplicates == 60

        await wait_for(all_accounted, timeout=90)
    await conn.close()
    assert relay.published == 30, "published a second time"
    assert rt.stats.duplicates == 30
    assert sorted(r["seq"] for r in await effects(fresh_db)) == list(range(30))
    async with kafka.consumer(unique("g"), [topic]) as raw:
        assert len(await drain(raw, 60)) == 60, "the broker holds both copies"
