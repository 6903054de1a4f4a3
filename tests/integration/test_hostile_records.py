"""Records with any bytes in key, headers and value, on the real broker: each is parked on
the dead-letter topic once, byte for byte, and the consumer goes on with the rest."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sagakit import deadletters
from sagakit.config import database_url
from sagakit.db import MigrationSet, migrate
from sagakit.devstack import StackInfo
from sagakit.messaging.transport import OutgoingRecord, Producer
from sagakit.messaging.transport.kafka import KafkaOptions, KafkaTransport
from sagakit.topics import DEAD_LETTERS, topic_name
from tests.conftest import unique
from tests.integration.kit import (
    EFFECTS,
    effects,
    enqueue,
    recording_router,
    running_consumer,
    running_relay,
    wait_for,
)

MESSAGING = MigrationSet.from_package("messaging", "sagakit.messaging")

headers = st.lists(st.tuples(st.text(max_size=12), st.none() | st.binary(max_size=40)), max_size=4)
records = st.tuples(
    st.none() | st.binary(max_size=40),
    st.none() | st.binary(max_size=600) | st.just(b"") | st.just(b"{}") | st.just(b"\x00"),
    headers,
).filter(lambda r: r[0] is not None or r[1] is not None)  # Kafka needs one of the two


@dataclass
class Harness:
    topic: str
    namespace: str
    url: str
    kafka: KafkaTransport
    producer: Producer
    sent: int = 0


@pytest.fixture(scope="module")
async def harness(stack: StackInfo) -> AsyncIterator[Harness]:
    """One database, relay and consumer for every example (a group join takes seconds)."""
    namespace = unique("hostile").replace("-", "")
    name = f"t_{namespace}"
    admin = await asyncpg.connect(stack.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = database_url(stack.database_url, name)
    conn = await asyncpg.connect(url)
    await migrate(conn, MESSAGING)
    await conn.execute(EFFECTS)
    await conn.close()
    kafka = KafkaTransport(KafkaOptions(bootstrap=stack.kafka_bootstrap, session_timeout_ms=3000))
    topic = f"{namespace}.step"
    await kafka.ensure_topics([topic, topic_name(namespace, DEAD_LETTERS)], 2)
    router = recording_router(topic, namespace)
    async with contextlib.AsyncExitStack() as stack_:
        producer = await stack_.enter_async_context(kafka.producer())
        await stack_.enter_async_context(running_relay(url, kafka))
        await stack_.enter_async_context(running_consumer(url, kafka, unique("g"), router))
        yield Harness(topic, namespace, url, kafka, producer)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(records, min_size=1, max_size=6))
async def test_any_record_is_dead_lettered_once_byte_for_byte(
    harness: Harness,
    batch: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]],
) -> None:
    h = harness
    raw = AIOKafkaProducer(bootstrap_servers=h.kafka.options.bootstrap)
    await raw.start()  # sends null keys and values too, which our port never does
    try:
        for k, v, hs in batch:
            await raw.send_and_wait(h.topic, v, key=k, headers=hs)
    finally:
        await raw.stop()
    # A null key or value is copied as empty bytes.
    out = [OutgoingRecord(h.topic, k or b"", v or b"", tuple(hs)) for k, v, hs in batch]
    h.sent += len(out)
    # A healthy message after them still gets through.
    conn = await asyncpg.connect(h.url)
    async with conn.transaction():
        await enqueue(conn, h.topic, "healthy", h.sent)
    await conn.close()

    async def through() -> bool:
        return any(r["seq"] == h.sent for r in await effects(h.url))

    await wait_for(through, timeout=60)
    letters: list[deadletters.DeadLetter] = []

    async def parked() -> bool:
        nonlocal letters
        letters = await deadletters.read(h.kafka, h.namespace, idle=0.3)
        return len(letters) >= h.sent

    await wait_for(parked, timeout=60)
    assert len(letters) == h.sent, "each record dead-lettered exactly once"
    mine = {(d.key, d.value, d.headers) for d in letters}
    for rec in out:
        assert (rec.key, rec.value, rec.headers) in mine


async def test_a_dead_letter_too_large_for_the_broker_is_parked(harness: Harness) -> None:
    """A value that fits, but whose dead-letter copy (with the reason headers) does not:
    the copy waits in the outbox's parking table; later records still flow."""
    h = harness
    big = OutgoingRecord(h.topic, b"big", b"\xff" * 1_048_400)
    await h.producer.send_many([big])
    conn = await asyncpg.connect(h.url)
    try:

        async def parked() -> bool:
            return bool(await conn.fetchval("SELECT count(*) FROM sagakit_outbox_parked"))

        await wait_for(parked, timeout=60)
        row = await conn.fetchrow("SELECT key, value, error FROM sagakit_outbox_parked")
        assert row["key"] == b"big" and row["value"] == big.value
        assert "MessageSizeTooLarge" in row["error"]
        async with conn.transaction():
            await enqueue(conn, h.topic, "after-big", 10_000)

        async def through() -> bool:
            return any(r["seq"] == 10_000 for r in await effects(h.url))

        await wait_for(through, timeout=60)
        assert await conn.fetchval("SELECT count(*) FROM sagakit_outbox") == 0
    finally:
        await conn.close()


PRODUCE_BAD_HEADER_NAME = r"""
import asyncio, sys
from aiokafka import AIOKafkaProducer

class NotUtf8(str):  # the pure-Python encoder asks the name for its bytes
    def encode(self, *args, **kwargs):
        return b"\xff\xfe-name"

async def main(bootstrap, topic, before, after, *others):
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    batch = producer.create_batch()
    for value in others:  # good records on the other partition, in the same fetches
        batch.append(key=b"o", value=value.encode(), timestamp=None, headers=[])
    await (await producer.send_batch(batch, topic, partition=1))
    batch = producer.create_batch()
    batch.append(key=b"k", value=before.encode(), timestamp=None, headers=[])
    batch.append(key=b"k", value=b"bad", timestamp=None, headers=[(NotUtf8("x"), b"1")])
    await (await producer.send_batch(batch, topic, partition=0))
    await producer.send_and_wait(topic, after.encode(), key=b"k", partition=0)
    await producer.stop()

asyncio.run(main(*sys.argv[1:]))
"""


async def test_a_record_the_client_cannot_decode_is_parked_not_a_wall(
    harness: Harness, stack: StackInfo
) -> None:
    """A header name that is not UTF-8 (a Go producer can send one) makes the Kafka client
    raise at that offset on every poll. The consumer parks a placeholder naming the offset
    and goes on with the records behind it."""
    h = harness
    conn = await asyncpg.connect(h.url)
    seqs = range(20_001, 20_053)  # before and after the bad one; 50 on the other partition
    async with conn.transaction():  # valid envelopes, encoded as ours are
        for seq in seqs:
            await enqueue(conn, h.topic, "k", seq)
        rows = await conn.fetch("DELETE FROM sagakit_outbox RETURNING id, value")
    await conn.close()
    values = [r["value"].decode() for r in sorted(rows, key=lambda r: r["id"])]
    env = {**os.environ, "AIOKAFKA_NO_EXTENSIONS": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PRODUCE_BAD_HEADER_NAME,
        stack.kafka_bootstrap,
        h.topic,
        *values,
        env=env,
    )
    assert await proc.wait() == 0

    async def through() -> bool:
        return set(seqs) <= {r["seq"] for r in await effects(h.url)}

    await wait_for(through, timeout=60)
    letters = await deadletters.read(h.kafka, h.namespace, idle=0.3)
    unreadable = [d for d in letters if "cannot decode" in d.reason]
    assert len(unreadable) == 1 and unreadable[0].topic == h.topic
    assert unreadable[0].source_partition == 0
