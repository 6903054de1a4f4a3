"""Transactional outbox: write messages in the caller's transaction; a relay publishes them.

Ordering: rows are spread over ``LANES`` lanes by key. A relay claims lanes with
transaction-level advisory locks, so one relay at a time publishes a lane, in id order, and
deletes what the broker acknowledged in the same transaction. Rows of one key are therefore
published in commit order, provided writers of one key are serialized (a saga's writes are:
they update its row under a version check). Nothing is skipped: the relay does not tail by
id, it takes whatever committed rows remain.

A relay that dies after publishing and before its transaction commits leaves the rows in place:
they are published again (at-least-once); the receiving inbox drops the duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
import zlib
from collections.abc import Mapping, Sequence

import asyncpg

from sagakit.aio import sleep_or_stop
from sagakit.db.pool import Connection
from sagakit.messaging.codec import encode_headers, encode_value
from sagakit.messaging.envelope import Envelope
from sagakit.messaging.transport.port import OutgoingRecord, Producer

log = logging.getLogger(__name__)

LANES = 32
CHANNEL = "sagakit_outbox"
_LOCK_CLASS = 0x5A6A

_INSERT = """
INSERT INTO sagakit_outbox (lane, topic, key, message_id, value, headers)
SELECT * FROM unnest($1::smallint[], $2::text[], $3::text[], $4::uuid[], $5::bytea[], $6::jsonb[])
"""

_CLAIM = f"""
SELECT id, topic, key, value, headers FROM sagakit_outbox
WHERE lane IN (
    SELECT l.lane FROM (SELECT DISTINCT lane FROM sagakit_outbox) l
    WHERE pg_try_advisory_xact_lock({_LOCK_CLASS}, l.lane)
)
ORDER BY id
LIMIT $1
FOR UPDATE
"""

_DELETE = "DELETE FROM sagakit_outbox WHERE id = ANY($1::bigint[])"


def lane_of(key: str) -> int:
    return zlib.crc32(key.encode()) % LANES


async def add(tx: Connection, *messages: Envelope) -> None:
    """Queue ``messages`` for publication. Call inside the transaction whose effects they
    announce: they are published if and only if it commits."""
    if not messages:
        return
    await add_raw(
        tx,
        [(m.topic, m.key, m.message_id, encode_value(m), dict(m.headers)) for m in messages],
    )


async def add_raw(
    tx: Connection,
    rows: Sequence[tuple[str, str, uuid.UUID, bytes, Mapping[str, str]]],
) -> None:
    """Queue already-encoded records ``(topic, key, message_id, value, headers)``."""
    if not rows:
        return
    await tx.execute(
        _INSERT,
        [lane_of(r[1]) for r in rows],
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [json.dumps(dict(r[4])) for r in rows],
    )


class OutboxRelay:
    """Publishes committed outbox rows in batches. Wakes on NOTIFY (a dedicated connection
    to ``listen_url``), polls every ``poll_interval`` as a fallback. Safe to run several at
    once against one database."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: Producer,
        *,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        retry_delay: float = 0.5,
        listen_url: str | None = None,
    ) -> None:
        self.pool = pool
        self.producer = producer
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.retry_delay = retry_delay
        self.listen_url = listen_url
        self.published = 0
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Publish now: call after committing outbox rows in this process. NOTIFY reaches
        the relay too, but only some milliseconds later; it remains the way other
        processes' rows are noticed."""
        self._wake.set()

    async def publish_once(self) -> int:
        """Claim, publish and delete one batch; return how many rows it published."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_CLAIM, self.batch_size)
            if not rows:
                return 0
            await self.producer.send_many(
                [
                    OutgoingRecord(
                        r["topic"],
                        r["key"].encode(),
                        r["value"],
                        tuple(encode_headers(json.loads(r["headers"]))),
                    )
                    for r in rows
                ]
            )
            await conn.execute(_DELETE, [r["id"] for r in rows])
        self.published += len(rows)
        return len(rows)

    async def drain(self) -> int:
        """Publish until a claim comes back short."""
        total = 0
        while True:
            n = await self.publish_once()
            total += n
            if n < self.batch_size:
                return total

    async def run(self, stop: asyncio.Event) -> None:
        listener = await self._listen()
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    await self.drain()
                except Exception:
                    log.exception("outbox relay: publish failed; retrying")
                    await sleep_or_stop(stop, self.retry_delay)
                    continue
                waiter = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait(
                    {waiter, stopper},
                    timeout=self.poll_interval,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                waiter.cancel()
                stopper.cancel()
        finally:
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.close()

    async def _listen(self) -> asyncpg.Connection | None:
        if self.listen_url is None:
            return None
        try:
            listener: asyncpg.Connection = await asyncpg.connect(self.listen_url, timeout=10)
            await listener.add_listener(CHANNEL, lambda *_: self.wake())
        except (OSError, asyncpg.PostgresError):
            log.warning("outbox relay: LISTEN unavailable, polling only", exc_info=True)
            return None
        return listener
