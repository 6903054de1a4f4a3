"""In-process transport for unit tests. Same contract as the Kafka adapter."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sagakit.errors import SagakitError
from sagakit.messaging.transport.port import (
    Consumer,
    OutgoingRecord,
    Producer,
    Record,
    TopicPartition,
    Transport,
)


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
        parts = self.partitions.get(rec.topic)
        if parts is None:
            raise SagakitError(f"unknown topic {rec.topic!r}", retriable=True)
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
        for rec in records:
            self.broker.append(rec)
        await asyncio.sleep(0)


class MemoryConsumer(Consumer):
    def __init__(self, broker: MemoryBroker, group: str, topics: Sequence[str]) -> None:
        self.broker = broker
        self.group = group
        self.topics = tuple(topics)
        self.assignment: dict[TopicPartition, int] = {}  # partition -> next offset to read

    async def start(self) -> None:
        for t in self.topics:
            if t not in self.broker.partitions:
                raise SagakitError(f"unknown topic {t!r}")
        self.broker.join(self.group, self)

    async def stop(self) -> None:
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
        g = self.broker.groups[self.group]
        ok = True
        for tp, offset in offsets.items():
            if tp in self.assignment:
                g.committed[tp] = offset
            else:
                ok = False
        return ok


class MemoryTransport(Transport):
    def __init__(self, broker: MemoryBroker | None = None) -> None:
        self.broker = broker or MemoryBroker()

    def producer(self) -> Producer:
        return MemoryProducer(self.broker)

    def consumer(self, group: str, topics: Sequence[str]) -> Consumer:
        return MemoryConsumer(self.broker, group, topics)

    async def ensure_topics(self, topics: Sequence[str], partitions: int) -> None:
        for t in topics:
            self.broker.create_topic(t, partitions)
