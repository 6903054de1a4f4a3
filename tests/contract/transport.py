"""The contract every transport adapter passes (memory and Kafka alike)."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import pytest

from sagakit.messaging.transport import Consumer, OutgoingRecord, Record, Transport
from sagakit.messaging.transport.port import PublishFailed


def rec(topic: str, key: str, value: str, **headers: str) -> OutgoingRecord:
    return OutgoingRecord(
        topic, key.encode(), value.encode(), tuple((k, v.encode()) for k, v in headers.items())
    )


async def drain(consumer: Consumer, count: int, *, timeout: float = 30.0) -> list[Record]:
    got: list[Record] = []
    async with asyncio.timeout(timeout):
        while len(got) < count:
            for records in (await consumer.poll(max_records=500, timeout_ms=50)).values():
                got.extend(records)
    return got


def commit_all(records: list[Record]) -> dict[tuple[str, int], int]:
    offsets: dict[tuple[str, int], int] = {}
    for r in records:
        offsets[r.tp] = max(offsets.get(r.tp, 0), r.offset + 1)
    return offsets


class TransportContract:
    """Subclasses provide a ``transport`` fixture."""

    partitions = 3

    @pytest.fixture
    async def topic(self, transport: Transport) -> str:
        name = f"contract-{uuid.uuid4().hex[:10]}"
        await transport.ensure_topics([name], self.partitions)
        return name

    async def test_round_trip_keeps_key_value_headers(
        self, transport: Transport, topic: str
    ) -> None:
        async with transport.producer() as producer:
            await producer.send_many([rec(topic, "k1", "v1", trace="abc"), rec(topic, "k2", "v2")])
        async with transport.consumer(f"g-{uuid.uuid4().hex}", [topic]) as consumer:
            got = await drain(consumer, 2)
        by_key = {r.key: r for r in got}
        assert by_key[b"k1"].value == b"v1"
        assert dict(by_key[b"k1"].headers) == {"trace": b"abc"}
        assert by_key[b"k2"].value == b"v2"
        assert all(r.topic == topic for r in got)

    async def test_same_key_same_partition_in_order(self, transport: Transport, topic: str) -> None:
        keys = [f"key-{i}" for i in range(12)]
        async with transport.producer() as producer:
            await producer.send_many([rec(topic, k, f"{k}:{n}") for n in range(20) for k in keys])
        async with transport.consumer(f"g-{uuid.uuid4().hex}", [topic]) as consumer:
            got = await drain(consumer, 240)
        partitions: dict[bytes, set[int]] = defaultdict(set)
        seen: dict[bytes, list[int]] = defaultdict(list)
        for r in got:
            assert r.key is not None and r.value is not None
            partitions[r.key].add(r.partition)
            seen[r.key].append(int(r.value.split(b":")[1]))
        assert all(len(p) == 1 for p in partitions.values())
        assert all(v == list(range(20)) for v in seen.values())
        assert len({next(iter(p)) for p in partitions.values()}) > 1, "keys spread out"

    async def test_committed_offsets_survive_a_new_member(
        self, transport: Transport, topic: str
    ) -> None:
        group = f"g-{uuid.uuid4().hex}"
        async with transport.producer() as producer:
            await producer.send_many([rec(topic, "same", str(n)) for n in range(10)])
        async with transport.consumer(group, [topic]) as first:
            got = await drain(first, 10)
            assert [r.value for r in got] == [str(n).encode() for n in range(10)]
            assert await first.commit({got[3].tp: got[3].offset + 1})
        async with transport.consumer(group, [topic]) as second:
            again = await drain(second, 6)
        assert [r.value for r in again] == [str(n).encode() for n in range(4, 10)]

    async def test_lag_counts_the_records_not_yet_fetched(
        self, transport: Transport, topic: str
    ) -> None:
        async with transport.producer() as producer:
            await producer.send_many([rec(topic, "same", str(n)) for n in range(10)])
        async with transport.consumer(f"g-{uuid.uuid4().hex}", [topic]) as consumer:
            got: list[Record] = []
            async with asyncio.timeout(30):
                while not got:  # (a group member may take a moment to be assigned)
                    for records in (await consumer.poll(max_records=4, timeout_ms=50)).values():
                        got.extend(records)
            assert len(got) == 4
            lag = await consumer.lag()
            assert lag[got[0].tp] == 6, lag
            assert all(n == 0 for tp, n in lag.items() if tp != got[0].tp), lag
            await drain(consumer, 6)
            assert (await consumer.lag())[got[0].tp] == 0

    async def test_groups_are_independent(self, transport: Transport, topic: str) -> None:
        async with transport.producer() as producer:
            await producer.send_many([rec(topic, f"k{n}", str(n)) for n in range(30)])
        for _ in range(2):
            async with transport.consumer(f"g-{uuid.uuid4().hex}", [topic]) as consumer:
                assert len(await drain(consumer, 30)) == 30

    async def test_one_group_shares_partitions(self, transport: Transport, topic: str) -> None:
        group = f"g-{uuid.uuid4().hex}"
        async with transport.producer() as producer:
            await producer.send_many([rec(topic, f"k{n}", str(n)) for n in range(60)])
        a = transport.consumer(group, [topic])
        b = transport.consumer(group, [topic])
        await asyncio.gather(a.start(), b.start())
        try:
            got: dict[str, list[Record]] = {"a": [], "b": []}
            async with asyncio.timeout(60):
                while len(got["a"]) + len(got["b"]) < 60 or not (got["a"] and got["b"]):
                    for name, c in (("a", a), ("b", b)):
                        batch = await c.poll(max_records=5, timeout_ms=50)
                        for records in batch.values():
                            got[name].extend(records)
                            await c.commit(commit_all(records))
        finally:
            await asyncio.gather(a.stop(), b.stop())
        values = [r.value for r in got["a"] + got["b"]]
        assert sorted(values) == sorted(str(n).encode() for n in range(60))
        assert {r.partition for r in got["a"]}.isdisjoint({r.partition for r in got["b"]})

    async def test_any_bytes_survive_the_round_trip(self, transport: Transport, topic: str) -> None:
        odd = OutgoingRecord(
            topic,
            b"\x00\x00\x00\x2a",
            b"\xff\x00\xfe",
            (("nul\x00name", b"\x00\xff"), ("no value", None)),
        )
        async with transport.producer() as producer:
            await producer.send_many([odd, OutgoingRecord(topic, b"", b"")])
        async with transport.consumer(f"g-{uuid.uuid4().hex}", [topic]) as consumer:
            got = {r.key: r for r in await drain(consumer, 2)}
        assert got[b"\x00\x00\x00\x2a"].value == b"\xff\x00\xfe"
        assert got[b"\x00\x00\x00\x2a"].headers == odd.headers
        assert got[b""].value == b""

    async def test_an_oversized_record_fails_alone(self, transport: Transport, topic: str) -> None:
        batch = [rec(topic, "a", "1"), OutgoingRecord(topic, b"b", b"x" * 2_000_000)]
        batch.append(rec(topic, "c", "3"))
        async with transport.producer() as producer:
            with pytest.raises(PublishFailed) as failed:
                await producer.send_many(batch)
        assert list(failed.value.failures) == [1]
        assert not failed.value.failures[1].retriable, "too large stays too large"
        async with transport.consumer(f"g-{uuid.uuid4().hex}", [topic]) as consumer:
            assert sorted(r.value for r in await drain(consumer, 2)) == [b"1", b"3"]

    async def test_a_reader_without_group_sees_everything(
        self, transport: Transport, topic: str
    ) -> None:
        async with transport.producer() as producer:
            await producer.send_many([rec(topic, f"k{n}", str(n)) for n in range(12)])
        for _ in range(2):  # it commits nothing, so the second read sees it all again
            async with transport.consumer(None, [topic]) as reader:
                assert len(await drain(reader, 12)) == 12
                with pytest.raises(TypeError):
                    await reader.commit({(topic, 0): 1})
