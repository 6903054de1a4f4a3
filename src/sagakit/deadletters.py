"""Operator tools for the dead-letter topic: list what was parked and why, and replay a
record once its cause is fixed (``sagakit dlq list`` / ``sagakit dlq replay``).

Replaying forgets the message in the consumer group's inbox (it was recorded there when it
was dead-lettered, so that redeliveries would not park it twice) and publishes the original
record again, unchanged (key, value and headers byte for byte), to its original topic,
through that service's outbox.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from sagakit.db import Connection
from sagakit.messaging import derived_id, inbox, outbox
from sagakit.messaging.transport import Transport
from sagakit.messaging.transport.port import Headers
from sagakit.topics import DEAD_LETTERS, topic_name

_PREFIX = "sagakit.dlq."


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes
    group: str
    """Consumer group that gave up on the record."""
    topic: str
    """Where the record came from."""
    source_partition: int
    source_offset: int
    error: str
    reason: str
    attempts: int
    value: bytes
    headers: Headers = field(default=())
    """The record's own headers, without the dead-letter ones."""

    @property
    def printable_key(self) -> str:
        try:
            text = self.key.decode()
        except UnicodeDecodeError:
            return repr(self.key)
        return text if text.isprintable() else repr(self.key)

    @property
    def message_id(self) -> uuid.UUID | None:
        try:
            return uuid.UUID(json.loads(self.value)["id"])
        except (ValueError, KeyError, TypeError):
            return None

    @property
    def recorded_id(self) -> uuid.UUID:
        """The id its group's inbox recorded it under: the message's own, or for a record
        it could not read as a message, one derived from where the record was."""
        return self.message_id or derived_id(self.topic, self.source_partition, self.source_offset)

    @property
    def message_type(self) -> str | None:
        try:
            return str(json.loads(self.value)["type"])
        except (ValueError, KeyError, TypeError):
            return None


def _parse(
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    raw_headers: Headers,
) -> DeadLetter:
    headers = {
        k: v.decode("utf-8", "replace") for k, v in raw_headers if k.startswith(_PREFIX) and v
    }
    own = tuple((k, v) for k, v in raw_headers if not k.startswith(_PREFIX))

    def number(name: str, default: int) -> int:
        try:
            return int(headers.get(_PREFIX + name, default))
        except ValueError:
            return default

    return DeadLetter(
        partition=partition,
        offset=offset,
        key=key or b"",
        group=headers.get(_PREFIX + "group", ""),
        topic=headers.get(_PREFIX + "topic", ""),
        source_partition=number("partition", -1),
        source_offset=number("offset", -1),
        error=headers.get(_PREFIX + "error", ""),
        reason=headers.get(_PREFIX + "reason", ""),
        attempts=number("attempts", 0),
        value=value or b"",
        headers=own,
    )


async def read(
    transport: Transport, namespace: str = "", *, limit: int = 1000, idle: float = 1.5
) -> list[DeadLetter]:
    """Every dead letter (up to ``limit``), oldest first per partition. Reads every
    partition without joining a consumer group, so listing leaves nothing behind."""
    topic = topic_name(namespace, DEAD_LETTERS)
    found: list[DeadLetter] = []
    async with transport.consumer(None, [topic]) as c:
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        while len(found) < limit and loop.time() - quiet_since < idle:
            batches = await c.poll(max_records=500, timeout_ms=200)
            for records in batches.values():
                found += [_parse(r.partition, r.offset, r.key, r.value, r.headers) for r in records]
                quiet_since = loop.time()
    return found[:limit]


async def replay(
    letter: DeadLetter,
    *,
    consumer_db: Connection,
    by: str = "",
    note: str = "",
    publish: bool = True,
    others_released: bool = False,
) -> bool:
    """Make the consumer group's inbox forget the message (``consumer_db`` is that group's
    service database), record who replayed it and why (``sagakit_replays``), and queue the
    original record, unchanged (key, value and headers byte for byte), for its topic in that
    database's outbox: all in one transaction, so that a replay is either done whole or not
    at all, and the service's relay publishes it. ``publish=False`` only releases it: for
    the other groups that gave up on the same record, which one publication serves.
    False, and nothing queued, if the message was replayed already: a second replay (or a
    second copy of the same dead letter) would otherwise have it handled twice; unless
    ``others_released``: other groups were just released for the same record, and it must
    reach them (this group's inbox drops it as handled)."""
    async with consumer_db.transaction():
        # Given up on while it was read, a message is recorded under the id of where it was.
        where = derived_id(letter.topic, letter.source_partition, letter.source_offset)
        released = [
            await inbox.release_dead_letter(consumer_db, letter.group, i)
            for i in dict.fromkeys(filter(None, (letter.message_id, where)))
        ]
        if not any(released) and not (publish and others_released):
            return False
        await consumer_db.execute(
            "INSERT INTO sagakit_replays (consumer_group, topic, dlq_partition, dlq_offset,"
            " message_id, replayed_by, note) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            letter.group,
            letter.topic,
            letter.partition,
            letter.offset,
            letter.recorded_id,
            by,
            note if any(released) else f"{note} (for the other groups only)",
        )
        if publish:
            record = (letter.topic, letter.key, uuid.uuid4(), letter.value, letter.headers)
            await outbox.add_raw(consumer_db, [record])
    return True


async def replays(conn: Connection, group: str, message_ids: Sequence[str]) -> list[asyncpg.Record]:
    """The replays recorded of these messages of ``group``: who, when, and why."""
    return list(
        await conn.fetch(
            "SELECT message_id, dlq_partition, dlq_offset, replayed_by, note, at"
            " FROM sagakit_replays"
            " WHERE consumer_group = $1 AND message_id = ANY($2::uuid[])",
            group,
            list(message_ids),
        )
    )
