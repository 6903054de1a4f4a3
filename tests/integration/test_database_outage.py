"""A database outage mid-stream: the consumer waits it out. Nothing is lost, nothing is
doubled, and no healthy message is dead-lettered for the database's fault."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import asyncpg

from sagakit.db import MigrationSet, migrate
from sagakit.devstack import postgres
from sagakit.devstack.processes import free_port
from sagakit.messaging import RetryPolicy
from sagakit.messaging.transport.kafka import KafkaTransport
from tests.conftest import _test_root, unique
from tests.integration.kit import EFFECTS, recording_router, running_consumer
from tests.integration.test_runtime import record

MESSAGING = MigrationSet.from_package("messaging", "sagakit.messaging")


async def test_consumer_waits_out_a_database_restart(kafka: KafkaTransport) -> None:
    data = Path(tempfile.mkdtemp(prefix="outage-", dir=_test_root())) / "pg"
    port = free_port()
    await asyncio.to_thread(postgres.start, data, port)
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        conn = await asyncpg.connect(url)
        await migrate(conn, MESSAGING)
        await conn.execute(EFFECTS)
        await conn.close()
        topic, group = unique("outage"), unique("g")
        await kafka.ensure_topics([topic], 1)
        quick = RetryPolicy(max_attempts=2, initial_delay=0.05, max_delay=0.2)
        async with running_consumer(url, kafka, group, recording_router(topic), retry=quick) as rt:
            async with kafka.producer() as producer:
                await producer.send_many([record(topic, "k", n) for n in range(20)])
                await asyncio.sleep(1.5)
                await asyncio.to_thread(postgres.stop, data)  # the outage begins
                await producer.send_many([record(topic, "k", n) for n in range(20, 40)])
                await asyncio.sleep(2)
                await asyncio.to_thread(postgres.start, data, port)  # and ends
            async with asyncio.timeout(60):
                while rt.stats.handled < 40:
                    await asyncio.sleep(0.1)
        assert rt.stats.dead_lettered == 0
        conn = await asyncpg.connect(url)
        seqs = [r["seq"] for r in await conn.fetch("SELECT seq FROM effects ORDER BY seq")]
        await conn.close()
        assert seqs == list(range(40))
    finally:
        await asyncio.to_thread(postgres.wipe, data)
