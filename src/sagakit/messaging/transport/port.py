"""The transport port: what the messaging core needs from a broker, and nothing more.

Two adapters have this shape: :mod:`.kafka` (a real Kafka-protocol broker) and :mod:`.memory`
(in-process, for unit tests). Both pass the same contract suite.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Self

from sagakit.errors import SagakitError, TransientError

Headers = tuple[tuple[str, bytes | None], ...]
"""Kafka allows a header without a value (null)."""
TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    topic: str
    key: bytes
    value: bytes
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default=())
    unreadable: str | None = None
    """Set (with key, value and headers empty) for a record the client library could not
    decode at this offset, e.g. a header name that is not UTF-8: the consumer parks it
    like any record it cannot handle, instead of stopping at it."""

    @property
    def tp(self) -> TopicPartition:
        return (self.topic, self.partition)


class RecordRejected(SagakitError):
    """The broker refuses this record for good (too large, invalid topic, not allowed):
    sending it again will not help."""


class PublishFailed(TransientError):
    """Some records of a batch were not published; the others were."""

    def __init__(self, failures: Mapping[int, SagakitError]) -> None:
        first = next(iter(failures.values()), None)
        super().__init__(f"{len(failures)} record(s) not published, e.g. {first!r}")
        self.failures = dict(failures)
        """Index in the batch -> why; ``retriable`` says whether a resend may succeed."""


class Producer(ABC):
    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    async def send_many(self, records: Sequence[OutgoingRecord]) -> None:
        """Publish every record and return once the broker acknowledged all of them
        (acks=all). Records with the same key keep their order. Raises
        :class:`PublishFailed` naming each record that was not published (the others
        were); any other exception means some, all or none may have been published."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class Consumer(ABC):
    """A member of a consumer group. Offsets are committed only by :meth:`commit`."""

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    async def poll(
        self, *, max_records: int, timeout_ms: int
    ) -> dict[TopicPartition, list[Record]]:
        """Records from the assigned partitions, each list in offset order. A group that
        has never committed starts at the earliest offset."""

    @abstractmethod
    async def commit(self, offsets: Mapping[TopicPartition, int]) -> bool:
        """Commit ``offset`` (the next one to read) per partition. Returns False when the
        partition moved to another member meanwhile (its records will be redelivered)."""

    @abstractmethod
    async def lag(self) -> dict[TopicPartition, int]:
        """Per assigned partition whose end is known, the records after this member's
        position: written, not yet fetched."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class Transport(ABC):
    """Factory for producers and consumers on one cluster."""

    @abstractmethod
    def producer(self) -> Producer: ...

    @abstractmethod
    def consumer(self, group: str | None, topics: Sequence[str]) -> Consumer:
        """A group member; or, with ``group=None``, a reader of every partition from the
        earliest offset that joins no group and cannot commit (operator tools)."""

    @abstractmethod
    async def ensure_topics(self, topics: Sequence[str], partitions: int) -> None:
        """Create each missing topic with ``partitions`` partitions."""
