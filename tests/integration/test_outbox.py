"""Transactional outbox and relay against real PostgreSQL and the broker."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import defaultdict

import asyncpg
import pytest

from sagakit.messaging import OutboxRelay, codec, outbox
from sagakit.messaging.transport.kafka import KafkaTransport
from sagakit.messaging.transport.memory import MemoryBroker, MemoryTransport
from sagakit.messaging.transport.port import PublishFailed
from tests.conftest import unique
from tests.contract.transport import drain
from tests.integration.kit import enqueue, running_relay


async def test_only_committed_messages_are_published(fresh_db: str, kafka: KafkaTransport) -> None:
    topic = unique("outbox")
    await kafka.ensure_topics([topic], 3)
    conn = await asyncpg.connect(fresh_db)
    with pytest.raises(RuntimeError):
        async with conn.transaction():
            await enqueue(conn, topic, "rolled-back", 1)
            raise RuntimeError("abort")
    async with conn.transaction():
        await enqueue(conn, topic, "kept", 2)
    async with running_relay(fresh_db, kafka) as relay:
        async with kafka.consumer(unique("g"), [topic]) as consumer:
            got = await drain(consumer, 1)
            await asyncio.sleep(0.3)
            assert await consumer.poll(max_records=10, timeout_ms=200) == {}
        assert relay.published == 1
    env = codec.decode(got[0].topic, got[0].key, got[0].value, got[0].headers)
    assert env.key == "kept" and env.payload == {"seq": 2}
    assert await conn.fetchval("SELECT count(*) FROM sagakit_outbox") == 0
    await conn.close()


async def test_notify_wakes_the_relay_before_its_poll_interval(
    fresh_db: str, kafka: KafkaTransport
) -> None:
    topic = unique("outbox")
    await kafka.ensure_topics([topic], 1)
    async with running_relay(fresh_db, kafka, poll_interval=3600) as relay:
        await asyncio.sleep(0.2)  # the relay is now waiting
        conn = await asyncpg.connect(fresh_db)
        async with conn.transaction():
            await enqueue(conn, topic, "k", 1)
        await conn.close()
        async with asyncio.timeout(30):
            while relay.published < 1:
                await asyncio.sleep(0.02)


async def test_concurrent_writers_and_relays_keep_per_key_order(
    fresh_db: str, kafka: KafkaTransport
) -> None:
    """30 keys x 100 messages written concurrently (one key's writes serialized, as a saga's
    are), three relays publishing at once: every message arrives, once, in key order."""
    topic = unique("outbox")
    await kafka.ensure_topics([topic], 3)
    keys, per_key = [f"saga-{i}" for i in range(30)], 100

    async def writer(pool: asyncpg.Pool, key: str) -> None:
        for seq in range(per_key):
            async with pool.acquire() as conn, conn.transaction():
                await enqueue(conn, topic, key, seq)
            if random.random() < 0.1:
                await asyncio.sleep(0)

    pool = await asyncpg.create_pool(fresh_db, min_size=4, max_size=10)
    async with (
        running_relay(fresh_db, kafka, batch_size=50),
        running_relay(fresh_db, kafka, batch_size=50),
        running_relay(fresh_db, kafka, batch_size=50),
    ):
        await asyncio.gather(*(writer(pool, k) for k in keys))
        async with kafka.consumer(unique("g"), [topic]) as consumer:
            got = await drain(consumer, len(keys) * per_key, timeout=90)
            await asyncio.sleep(0.5)
            extra = await consumer.poll(max_records=100, timeout_ms=300)
    await pool.close()
    assert extra == {}, "no message published twice"
    seqs: dict[str, list[int]] = defaultdict(list)
    for r in got:
        env = codec.decode(r.topic, r.key, r.value, r.headers)
        seqs[env.key].append(int(env.payload["seq"]))
    assert set(seqs) == set(keys)
    assert all(s == list(range(per_key)) for s in seqs.values())


async def test_relays_and_consumers_together_handle_each_message_once_in_key_order(
    fresh_db: str, kafka: KafkaTransport
) -> None:
    """Writers -> outbox -> three relays -> broker -> two consumer runtimes in one group
    (one joining late, so partitions move mid-stream): each message takes effect once, and
    each key's messages take effect in the order they were written."""
    from tests.integration.kit import (
        create_effects,
        effects,
        recording_router,
        running_consumer,
        wait_for,
    )

    topic, group = unique("e2e-msg"), unique("g")
    await kafka.ensure_topics([topic], 3)
    await create_effects(fresh_db)
    keys, per_key = [f"saga-{i}" for i in range(40)], 50
    pool = await asyncpg.create_pool(fresh_db, min_size=4, max_size=10)

    async def writer(key: str) -> None:
        for seq in range(per_key):
            async with pool.acquire() as conn, conn.transaction():
                await enqueue(conn, topic, key, seq)
            await asyncio.sleep(0.2)  # a stream lasting well past the second consumer's join

    router = recording_router(topic)
    async with (
        running_relay(fresh_db, kafka, batch_size=100),
        running_relay(fresh_db, kafka, batch_size=100),
        running_relay(fresh_db, kafka, batch_size=100),
        running_consumer(fresh_db, kafka, group, router) as first,
    ):
        writers = asyncio.gather(*(writer(k) for k in keys))
        await asyncio.sleep(0.5)
        async with running_consumer(fresh_db, kafka, group, router) as second:

            async def all_handled() -> bool:
                return len(await effects(fresh_db)) >= len(keys) * per_key

            await writers
            await wait_for(all_handled, timeout=120)
            await asyncio.sleep(1)  # let any late duplicate arrive (it must be skipped)
    await pool.close()
    rows = await effects(fresh_db)  # ordered by the time each took effect
    assert len(rows) == len(keys) * per_key, "no message lost or doubled"
    seqs: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        seqs[r["key"]].append(r["seq"])
    assert all(s == list(range(per_key)) for s in seqs.values()), "per-key order"
    assert first.stats.handled > 0 and second.stats.handled > 0, "both consumers worked"


async def test_a_row_the_broker_refuses_is_parked_and_the_rest_flow(
    fresh_db: str, kafka: KafkaTransport
) -> None:
    """An oversized row used to be the oldest row of every claim for ever; now it is parked
    (listed, requeued by an operator) and the rows behind it, of its key too, go out."""
    topic = unique("outbox")
    await kafka.ensure_topics([topic], 1)
    conn = await asyncpg.connect(fresh_db)
    async with conn.transaction():
        await outbox.add_raw(conn, [(topic, b"k", uuid.uuid4(), b"x" * 2_000_000, [])])
        for n in range(3):
            await enqueue(conn, topic, "k", n)
    async with running_relay(fresh_db, kafka) as relay:
        async with kafka.consumer(unique("g"), [topic]) as consumer:
            got = await drain(consumer, 3)
        assert relay.stats.parked == 1
    assert [codec.decode(topic, r.key, r.value, r.headers).payload["seq"] for r in got] == [0, 1, 2]
    [row] = await outbox.parked(conn)
    assert row["size"] == 2_000_000 and "MessageSizeTooLarge" in row["error"]
    assert await outbox.requeue(conn, row["id"]) == 1
    assert await outbox.requeue(conn, row["id"]) == 0
    assert await conn.fetchval("SELECT count(*) FROM sagakit_outbox") == 1
    await conn.close()


async def test_a_row_that_keeps_failing_alone_is_parked_after_its_attempts(
    fresh_db: str,
) -> None:
    """Failures of one row while the rest of its batch goes through count against it; a
    batch that fails as a whole (an outage) counts against no row."""
    broker = MemoryBroker()
    transport = MemoryTransport(broker)
    await transport.ensure_topics(["ok"], 1)
    conn = await asyncpg.connect(fresh_db)
    pool = await asyncpg.create_pool(fresh_db, min_size=1, max_size=2)
    producer = transport.producer()
    relay = OutboxRelay(pool, producer, max_attempts=3)
    async with conn.transaction():
        await enqueue(conn, "missing", "a", 1)  # a topic that does not exist
    for _ in range(5):  # alone in its batch: an outage as far as the relay can tell
        with pytest.raises(PublishFailed):
            await relay.publish_once()
    assert await conn.fetchval("SELECT attempts FROM sagakit_outbox") == 0
    for n in range(3):
        async with conn.transaction():
            await enqueue(conn, "ok", "b", n)
        await relay.publish_once()
    assert await conn.fetchval("SELECT count(*) FROM sagakit_outbox") == 0
    [row] = await outbox.parked(conn)
    assert row["topic"] == "missing" and row["attempts"] == 3
    assert len(broker.partitions["ok"][0]) == 3
    assert await outbox.requeue(conn, topic="elsewhere") == 0
    assert await outbox.requeue(conn, topic="missing") == 1  # e.g. once the topic exists
    await pool.close()
    await conn.close()
