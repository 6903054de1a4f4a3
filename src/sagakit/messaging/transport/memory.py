"""In-process transport for unit tests. Same contract as the Kafka adapter."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sagakit.errors import SagakitError, TransientError
from sagakit.messaging.transport.port import (
    Consumer,
    OutgoingRecord,
    Producer,
    PublishFailed,
    Record,
    RecordRejected,
    TopicPartition,
    Transport,
)

MAX_RECORD_BYTES = 1_048_576
"""Like Kafka's default ``max.request.size``: a larger record is rejected for good."""


@dataclass
class _Group:
    members: list[MemoryConsumer] = field(default_factory=list)
    committed: dict[TopicPartition, int] = field(default_factory=dict)


class MemoryBroker:
    """Topics as lists of partitions, groups with committed offsets and round-robin
    assignment, re-balanced whenever a member joins or leaves."""

    def __init__(self) -> None:
        self.partitions: dict[str, list[list[Record]]] = {}
        self.groups: dict[str, _Group] = {}
        self.changed = asyncio.Event()

    def create_topic(self, topic: str, partitions: int) -> None:
        self.partitions.setdefault(topic, [[] for _ in range(partitions)])

    def append(self, rec: OutgoingRecord) -> None:
        size = len(rec.key) + len(rec.value) + sum(len(k) + len(v or b"") for k, v in rec.headers)
        if size > MAX_RECORD_BYTES:
            raise RecordRejected(f"record of {size} bytes is over {MAX_RECORD_BYTES}")
        parts = self.partitions.get(rec.topic)
        if parts is None:
            raise TransientError(f"unknown topic {rec.topic!r}")
        index = zlib.crc32(rec.key) % len(parts)
        log = parts[index]
        log.append(Record(rec.topic, index, len(log), rec.key, rec.value, rec.headers))
        self.changed.set()

    def join(self, group: str, member: MemoryConsumer) -> None:
        g = self.groups.setdefault(group, _Group())
        g.members.append(member)
        self._rebalance(g)

    def leave(self, group: str, member: MemoryConsumer) -> None:
        g = self.groups[group]
        if member in g.members:
            g.members.remove(member)
            self._rebalance(g)

    def _rebalance(self, g: _Group) -> None:
        for m in g.members:
            m.assignment = {}
        if not g.members:
            return
        tps = sorted(
            {(t, p) for m in g.members for t in m.topics for p in range(len(self.partitions[t]))}
        )
        turn: dict[str, int] = {}
        for topic, partition in tps:
            subscribed = [m for m in g.members if topic in m.topics]
            n = turn[topic] = turn.get(topic, -1) + 1
            owner = subscribed[n % len(subscribed)]
            owner.assignment[(topic, partition)] = g.committed.get((topic, partition), 0)


class MemoryProducer(Producer):
    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send_many(self, records: Sequence[OutgoingRecord]) -> None:
        failures: dict[int, SagakitError] = {}
        for i, rec in enumerate(records):
            try:
                self.broker.append(rec)
            except SagakitError as exc:
                failures[i] = exc
        await asyncio.sleep(0)
        if failures:
            raise PublishFailed(failures)


class MemoryConsumer(Consumer):
    def __init__(self, broker: MemoryBroker, group: str | None, topics: Sequence[str]) -> None:
        self.broker = broker
        self.group = group
        self.topics = tuple(topics)
        self.assignment: dict[TopicPartition, int] = {}  # partition -> next offset to read

    async def start(self) -> None:
        for t in self.topics:
            if t not in self.broker.partitions:
                raise SagakitError(f"unknown topic {t!r}")
        if self.group is None:  # a reader: every partition, from the start
            self.assignment = {
                (t, p): 0 for t in self.topics for p in range(len(self.broker.partitions[t]))
            }
        else:
            self.broker.join(self.group, self)

    async def stop(self) -> None:
        if self.group is not None:
            self.broker.leave(self.group, self)

    def _take(self, max_records: int) -> dict[TopicPartition, list[Record]]:
        out: dict[TopicPartition, list[Record]] = {}
        budget = max_records
        for tp, pos in self.assignment.items():
            log = self.broker.partitions[tp[0]][tp[1]]
            batch = log[pos : pos + budget]
            if batch:
                out[tp] = batch
                self.assignment[tp] = pos + len(batch)
                budget -= len(batch)
            if budget <= 0:
                break
        return out

    async def poll(
        self, *, max_records: int, timeout_ms: int
    ) -> dict[TopicPartition, list[Record]]:
        got = self._take(max_records)
        if got:
            return got
        self.broker.changed.clear()
        try:
            await asyncio.wait_for(self.broker.changed.wait(), timeout_ms / 1000)
        except TimeoutError:
            return {}
        return self._take(max_records)

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> bool:
        if self.group is None:
            raise TypeError("a reader without a group cannot commit offsets")
        g = self.broker.groups[self.group]
        ok = True
        for tp, offset in offsets.items():
            if tp in self.assignment:
                g.committed[tp] = offset
            else:
                ok = False
        return ok

    async def lag(self) -> dict[TopicPartition, int]:
        return {
            tp: len(self.broker.partitions[tp[0]][tp[1]]) - pos
            for tp, pos in self.assignment.items()
        }


class MemoryTransport(Transport):
    def __init__(self, broker: MemoryBroker | None = None) -> None:
        self.broker = broker or MemoryBroker()

    def producer(self) -> Producer:
        return MemoryProducer(self.broker)

    def consumer(self, group: str | None, topics: Sequence[str]) -> Consumer:
        return MemoryConsumer(self.broker, group, topics)

    async def ensure_topics(self, topics: Sequence[str], partitions: int) -> None:
        for t in topics:
            self.broker.create_topic(t, partitions)
