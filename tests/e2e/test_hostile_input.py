"""Hostile records on every topic the services read, on the real broker: records with any
bytes in key, headers and value, empty values, values near the size limit, envelopes of
unknown types and malformed payloads. Every service stays healthy and later sagas complete."""

from __future__ import annotations

import asyncio
import json
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sagakit.fleet import Fleet
from sagakit.messaging.transport import OutgoingRecord
from sagakit.messaging.transport.kafka import KafkaOptions, KafkaTransport
from sagakit.topics import DEAD_LETTERS, topic_name
from tests.e2e.conftest import Shop


def envelope(type_: str, payload: object) -> bytes:
    doc = {
        "id": str(uuid.uuid4()),
        "type": type_,
        "created_at": "2026-01-01T00:00:00+00:00",
        "payload": payload,
    }
    return json.dumps(doc).encode()


def corpus(topic: str) -> list[OutgoingRecord]:
    """The records that stopped services before: NUL keys and headers (int-serialised keys
    from Java and Go producers), invalid UTF-8, empty and near-limit values."""
    type_ = topic.split(".", 1)[1]
    nul = b"\x00\x00\x00\x2a"
    return [
        OutgoingRecord(topic, nul, envelope(type_, {"order_id": "x"})),
        OutgoingRecord(topic, b"k", envelope(type_, {}), (("trace\x00", b"\x00\xff"),)),
        OutgoingRecord(topic, b"\xff\xfe", b"\xff\xfe\x00"),
        OutgoingRecord(topic, b"", b""),
        OutgoingRecord(topic, nul, envelope("no.such.type", {"order_id": "x"})),
        OutgoingRecord(topic, b"k", envelope(type_, {"order_id": "\x00", "quantity": True})),
        OutgoingRecord(topic, b"k", envelope(type_, {"order_id": ["not", "text"]})),
        OutgoingRecord(topic, b"big", b"{" + b"\x00" * 1_040_000),
    ]


def read_topics(fleet: Fleet) -> list[str]:
    dead = topic_name(fleet.settings.namespace, DEAD_LETTERS)
    return [t for t in fleet.topics() if t != dead]


async def assert_all_healthy(shop: Shop) -> None:
    for name in shop.fleet.processes:
        r = await shop.http.get(f"{shop.fleet.url(name)}/health")
        assert r.status_code == 200, (name, r.text)


async def a_saga_completes(shop: Shop) -> None:
    product, customer = await shop.product(stock=5, price_cents=100), await shop.customer(1_000)
    order = await shop.settled(await shop.order(customer, product, 1), timeout=60)
    assert order["status"] == "CONFIRMED"


def producer_for(fleet: Fleet) -> KafkaTransport:
    return KafkaTransport(KafkaOptions(bootstrap=fleet.stack.kafka_bootstrap))


async def test_known_poison_on_every_topic(shop: Shop) -> None:
    async with producer_for(shop.fleet).producer() as producer:
        for topic in read_topics(shop.fleet):
            await producer.send_many(corpus(topic))
    await a_saga_completes(shop)
    await asyncio.sleep(1)  # let every consumer reach the records
    await assert_all_healthy(shop)
    await a_saga_completes(shop)


records = st.tuples(
    st.binary(max_size=24),
    st.binary(max_size=300) | st.just(b""),
    st.lists(st.tuples(st.text(max_size=8), st.none() | st.binary(max_size=16)), max_size=3),
)


@settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_arbitrary_records_on_every_topic(shop: Shop, data: st.DataObject) -> None:
    async with producer_for(shop.fleet).producer() as producer:
        for topic in read_topics(shop.fleet):
            batch = data.draw(st.lists(records, min_size=1, max_size=3), label=topic)
            await producer.send_many([OutgoingRecord(topic, k, v, tuple(h)) for k, v, h in batch])
    await a_saga_completes(shop)
    await assert_all_healthy(shop)
