"""Kafka adapter (aiokafka). See docs/decisions.md for why aiokafka.

Producer: acks=all, no linger (the relay hands it a whole batch at once; lingering only
delayed every hop, see docs/benchmarks.md). Consumer: auto-commit
off, earliest offset for a new group, a short fetch max-wait (the broker answers an idle fetch
only when it expires) and a short session timeout so a killed member's partitions move soon.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka import TopicPartition as KafkaTP
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    BrokerResponseError,
    CommitFailedError,
    CorruptRecordException,
    IllegalStateError,
    InvalidReplicationFactorError,
    KafkaError,
    TopicAlreadyExistsError,
    for_code,
)

from sagakit.errors import ConfigError, SagakitError, TransientError
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


def _why(exc: BaseException) -> SagakitError:
    """A send failure as our taxonomy sees it. The broker's own non-retriable answers (too
    large, invalid topic, not authorised, corrupt) and malformed arguments are final for
    that record; timeouts, lost connections and leader moves may pass."""
    if isinstance(exc, BrokerResponseError) and not exc.retriable:
        return RecordRejected(f"broker rejected the record: {exc!r}")
    if isinstance(exc, TypeError | ValueError):
        return RecordRejected(f"record cannot be sent: {exc!r}")
    return TransientError(f"publish failed: {exc!r}")


@dataclass(frozen=True, kw_only=True)
class KafkaOptions:
    bootstrap: str
    """Comma-separated host:port list."""
    fetch_max_wait_ms: int = 20
    """How long the broker may hold an idle fetch (Tansu always waits this long)."""
    fetch_idle_wait_ms: int | None = None
    """The max-wait once nothing has come for ``idle_after_s`` (None: always
    ``fetch_max_wait_ms``). At rest a consumer then sends a fetch every this long instead
    of every ``fetch_max_wait_ms``; the first record after a quiet spell waits up to this
    long."""
    idle_after_s: float = 5.0
    session_timeout_ms: int = 6000
    """A member silent this long is dropped from its group."""
    heartbeat_interval_ms: int = 500
    linger_ms: int = 0
    """How long the producer waits to fill a batch."""
    request_timeout_ms: int = 15_000
    client_id: str = "sagakit"


class KafkaProducer(Producer):
    def __init__(self, options: KafkaOptions) -> None:
        self.options = options
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        o = self.options
        self._producer = AIOKafkaProducer(
            bootstrap_servers=o.bootstrap,
            client_id=o.client_id,
            acks="all",
            linger_ms=o.linger_ms,
            request_timeout_ms=o.request_timeout_ms,
            max_batch_size=256 * 1024,
        )
        try:
            await self._producer.start()
        except KafkaError as exc:
            await self._producer.stop()
            raise TransientError(f"Kafka producer cannot start: {exc!r}") from exc

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def send_many(self, records: Sequence[OutgoingRecord]) -> None:
        if self._producer is None:
            raise TransientError("producer not started")
        failures: dict[int, SagakitError] = {}
        pending: dict[int, asyncio.Future[object]] = {}
        for i, r in enumerate(records):
            try:  # send() itself refuses an oversized record, before any I/O
                pending[i] = await self._producer.send(
                    r.topic, r.value, key=r.key, headers=list(r.headers)
                )
            except (KafkaError, TypeError, ValueError) as exc:
                failures[i] = _why(exc)
        results = await asyncio.gather(*pending.values(), return_exceptions=True)
        for i, result in zip(pending, results, strict=True):
            if isinstance(result, BaseException):
                failures[i] = _why(result)
        if failures:
            raise PublishFailed(failures)


_UNREADABLE = (UnicodeDecodeError, CorruptRecordException)
"""What aiokafka raises from a poll when a record's bytes cannot be decoded (the C
extension and the pure-Python reader differ)."""


def _record(r: ConsumerRecord[bytes, bytes]) -> Record:
    return Record(r.topic, r.partition, r.offset, r.key, r.value, tuple(r.headers or ()))


class KafkaConsumer(Consumer):
    def __init__(self, options: KafkaOptions, group: str | None, topics: Sequence[str]) -> None:
        self.options = options
        self.group = group
        self.topics = tuple(topics)
        self._consumer: AIOKafkaConsumer | None = None
        self._returned: dict[TopicPartition, int] = {}
        """Per partition, the offset after the last record returned."""
        self._active_at = 0.0
        """When a poll last returned records (loop time)."""

    async def start(self) -> None:
        o = self.options
        self._consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=o.bootstrap,
            client_id=o.client_id,
            group_id=self.group,
            enable_auto_commit=False,  # without a group: every partition, nothing committed
            auto_offset_reset="earliest",
            fetch_max_wait_ms=o.fetch_max_wait_ms,
            session_timeout_ms=o.session_timeout_ms,
            heartbeat_interval_ms=o.heartbeat_interval_ms,
            max_poll_interval_ms=300_000,
            request_timeout_ms=o.request_timeout_ms,
        )
        try:
            await self._consumer.start()
        except KafkaError as exc:
            await self._consumer.stop()
            raise TransientError(f"Kafka consumer cannot start: {exc!r}") from exc
        self._active_at = asyncio.get_running_loop().time()  # short waits to begin with

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def poll(
        self, *, max_records: int, timeout_ms: int
    ) -> dict[TopicPartition, list[Record]]:
        assert self._consumer is not None, "consumer not started"
        try:
            batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        except _UNREADABLE:  # records came (one of them unreadable): not quiet
            self._adapt_wait(busy=True)
            return await self._salvage(max_records)
        out = {
            (tp.topic, tp.partition): [_record(r) for r in records]
            for tp, records in batches.items()
            if records
        }
        for tp, records in out.items():
            self._returned[tp] = records[-1].offset + 1
        self._adapt_wait(busy=bool(out))
        return out

    def _adapt_wait(self, *, busy: bool) -> None:
        """The fetch max-wait for what comes: the short one while records come, the idle
        one after ``idle_after_s`` with none. (aiokafka reads it from its fetcher for each
        request it sends; if a version stops doing so, it simply stays the short one.)"""
        o = self.options
        if o.fetch_idle_wait_ms is None:
            return
        now = asyncio.get_running_loop().time()
        if busy:
            self._active_at = now
        quiet = now - self._active_at > o.idle_after_s
        wait = max(o.fetch_idle_wait_ms, o.fetch_max_wait_ms) if quiet else o.fetch_max_wait_ms
        fetcher = getattr(self._consumer, "_fetcher", None)
        if fetcher is not None and getattr(fetcher, "_fetch_max_wait_ms", wait) != wait:
            fetcher._fetch_max_wait_ms = wait

    async def _rewind(self, tp: KafkaTP) -> None:
        """Back to an offset nothing after which was skipped: a poll that raised has moved
        the positions of partitions whose records it then threw away. A group member goes
        back to its committed offset (records handled since come again; the inbox drops
        them), a reader to the offset after the last record it returned."""
        assert self._consumer is not None
        if self.group is not None:
            nxt = await self._consumer.committed(tp)
        else:
            nxt = self._returned.get((tp.topic, tp.partition))
        if nxt is None:
            await self._consumer.seek_to_beginning(tp)
        else:
            self._consumer.seek(tp, nxt)

    async def _salvage(self, max_records: int) -> dict[TopicPartition, list[Record]]:
        """aiokafka raises on a record it cannot decode (a header name that is not UTF-8,
        which a Go producer can send), every time it meets it, and never gets past it.
        Read each partition one record at a time instead, from the first offset not yet
        returned: what decodes is returned as usual; at the offset that does not, an
        ``unreadable`` placeholder is returned and the partition moves past it. The records
        after it in the same producer batch are unreadable to the client too, so they
        become placeholders one by one (the offsets are in the dead letters)."""
        assert self._consumer is not None
        out: dict[TopicPartition, list[Record]] = {}
        for tp in sorted(self._consumer.assignment()):
            await self._rewind(tp)
        for tp in sorted(self._consumer.assignment()):
            got: list[Record] = []
            while len(got) < max_records:
                position = await self._consumer.position(tp)
                end = self._consumer.highwater(tp)
                if end is not None and position >= end:
                    break
                # Records known to be there are waited for as long as a request may take;
                # a partition not fetched yet only briefly.
                wait = self.options.request_timeout_ms if end is not None else 200
                try:
                    batch = await self._consumer.getmany(tp, timeout_ms=wait, max_records=1)
                except _UNREADABLE as exc:
                    offset = await self._consumer.position(tp)
                    got.append(
                        Record(tp.topic, tp.partition, offset, None, None, (), repr(exc)[:500])
                    )
                    self._consumer.seek(tp, offset + 1)
                    continue
                if not batch:
                    break
                got += [_record(r) for records in batch.values() for r in records]
            if got:
                key = (tp.topic, tp.partition)
                out[key] = got
                self._returned[key] = got[-1].offset + 1
        return out

    async def lag(self) -> dict[TopicPartition, int]:
        consumer = self._consumer
        if consumer is None:
            return {}
        out = {}
        for tp in sorted(consumer.assignment()):
            end = consumer.highwater(tp)  # as of the last fetch from that partition
            if end is None:
                continue
            try:
                position = await asyncio.wait_for(consumer.position(tp), 1.0)
            except (TimeoutError, KafkaError, IllegalStateError):
                continue  # being reassigned, or not reset yet: no figure this time
            out[(tp.topic, tp.partition)] = max(0, end - position)
        return out

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> bool:
        assert self._consumer is not None, "consumer not started"
        if self.group is None:
            raise TypeError("a reader without a group cannot commit offsets")
        assigned = self._consumer.assignment()
        mine = {KafkaTP(t, p): o for (t, p), o in offsets.items() if KafkaTP(t, p) in assigned}
        if not mine:
            return not offsets
        try:
            await self._consumer.commit(mine)
        except (CommitFailedError, IllegalStateError):
            return False
        return len(mine) == len(offsets)


class KafkaTransport(Transport):
    def __init__(self, options: KafkaOptions) -> None:
        self.options = options

    def producer(self) -> Producer:
        return KafkaProducer(self.options)

    def consumer(self, group: str | None, topics: Sequence[str]) -> Consumer:
        return KafkaConsumer(self.options, group, topics)

    async def ensure_topics(self, topics: Sequence[str], partitions: int) -> None:
        await ensure_topics(self.options.bootstrap, topics, partitions)


async def ensure_topics(
    bootstrap: str,
    topics: Sequence[str],
    partitions: int,
    *,
    replication_factor: int = 1,
    wait: float = 0.0,
) -> list[str]:
    """Create each missing topic; return the names created. A broker that cannot be reached
    is retried for up to ``wait`` seconds (services and broker often start together); a
    topic the broker refuses to create raises :class:`TopicsNotCreated` naming it."""
    deadline = time.monotonic() + wait
    delay = 0.2
    while True:
        try:
            return await _create_missing(bootstrap, topics, partitions, replication_factor)
        except (KafkaError, OSError, TimeoutError) as exc:
            if time.monotonic() + delay > deadline:
                raise TransientError(f"cannot create topics at {bootstrap}: {exc!r}") from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


class TopicsNotCreated(ConfigError):
    """The broker answered a topic creation with an error other than "exists already" (a
    replication factor above the broker count, a name or a partition count it refuses)."""


async def _create_missing(
    bootstrap: str, topics: Sequence[str], partitions: int, replication_factor: int
) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in dict.fromkeys(topics) if t not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [
                NewTopic(t, num_partitions=partitions, replication_factor=replication_factor)
                for t in missing
            ]
        )
        refused = refusals(response.topic_errors)
        if any(not passing for _, passing in refused):
            raise TopicsNotCreated("; ".join(why for why, _ in refused))
        if refused:  # brokers still starting or electing: try again
            raise KafkaError("; ".join(why for why, _ in refused))
        return missing
    finally:
        await admin.close()


def refusals(topic_errors: Sequence[tuple[Any, ...]]) -> list[tuple[str, bool]]:
    """Each topic a CreateTopics answer refused (``(topic, code[, message])`` entries), with
    the broker's reason, and whether it may pass (a retriable error, or a replication factor
    above the brokers registered so far); "exists already" is not a refusal."""
    refused = []
    for topic, code, *message in topic_errors:
        error = for_code(code)
        if code and error is not TopicAlreadyExistsError:
            why = " ".join(str(m) for m in message if m)
            passing = error.retriable or error is InvalidReplicationFactorError
            refused.append((f"{topic}: {error.__name__}" + (f" ({why})" if why else ""), passing))
    return refused
