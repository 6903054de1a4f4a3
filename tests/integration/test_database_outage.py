"""A database outage mid-stream: the consumer waits it out. Nothing is lost, nothing is
doubled, and no healthy message is dead-lettered for the database's fault."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from sagakit.db import MigrationSet, migrate
from sagakit.devstack import postgres
from sagakit.devstack.processes import free_port
from sagakit.messaging import RetryPolicy
from sagakit.messaging.transport.kafka import KafkaTransport
from tests.conftest import _test_root, unique
from tests.integration.kit import (
    EFFECTS,
    enqueue,
    recording_router,
    running_consumer,
    running_relay,
)
from tests.integration.test_runtime import record

MESSAGING = MigrationSet.from_package("messaging", "sagakit.messaging")


@dataclass
class PrivatePostgres:
    """A PostgreSQL server of the test's own, so it can be stopped and started."""

    data: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    async def stop(self) -> None:
        await asyncio.to_thread(postgres.stop, self.data)

    async def start(self) -> None:
        await asyncio.to_thread(postgres.start, self.data, self.port)


@pytest.fixture
async def private_pg() -> AsyncIterator[PrivatePostgres]:
    pg = PrivatePostgres(Path(tempfile.mkdtemp(prefix="pg-", dir=_test_root())) / "pg", free_port())
    await pg.start()
    conn = await asyncpg.connect(pg.url)
    await migrate(conn, MESSAGING)
    await conn.execute(EFFECTS)
    await conn.close()
    try:
        yield pg
    finally:
        await asyncio.to_thread(postgres.wipe, pg.data)


async def test_consumer_waits_out_a_database_restart(
    kafka: KafkaTransport, private_pg: PrivatePostgres
) -> None:
    url = private_pg.url
    topic, group = unique("outage"), unique("g")
    await kafka.ensure_topics([topic], 1)
    quick = RetryPolicy(max_attempts=2, initial_delay=0.05, max_delay=0.2)
    async with running_consumer(url, kafka, group, recording_router(topic), retry=quick) as rt:
        async with kafka.producer() as producer:
            await producer.send_many([record(topic, "k", n) for n in range(20)])
            await asyncio.sleep(1.5)
            await private_pg.stop()  # the outage begins
            await producer.send_many([record(topic, "k", n) for n in range(20, 40)])
            await asyncio.sleep(2)
            await private_pg.start()  # and ends
        async with asyncio.timeout(60):
            while rt.stats.handled < 40:
                await asyncio.sleep(0.1)
    assert rt.stats.dead_lettered == 0
    conn = await asyncpg.connect(url)
    seqs = [r["seq"] for r in await conn.fetch("SELECT seq FROM effects ORDER BY seq")]
    await conn.close()
    assert seqs == list(range(40))


async def test_the_relay_listens_again_after_a_database_restart(
    kafka: KafkaTransport, private_pg: PrivatePostgres
) -> None:
    """LISTEN dies with the server; the relay re-establishes it, so a commit after the
    restart is published at once, not at the next poll (an hour away here)."""
    topic = unique("relisten")
    await kafka.ensure_topics([topic], 1)
    url = private_pg.url
    async with running_relay(url, kafka, poll_interval=3600, relisten_interval=0.2) as relay:
        async with asyncio.timeout(10):
            while not relay.listening:
                await asyncio.sleep(0.05)
        await private_pg.stop()
        await private_pg.start()
        async with asyncio.timeout(30):
            while relay.stats.listens < 2:  # it noticed, and listens again
                await asyncio.sleep(0.05)
        conn = await asyncpg.connect(url)
        async with conn.transaction():
            await enqueue(conn, topic, "k", 1)
        await conn.close()
        async with asyncio.timeout(10):
            while relay.published < 1:
                await asyncio.sleep(0.02)
