"""Transactional outbox: write messages in the caller's transaction; a relay publishes them.

Ordering: rows are spread over ``LANES`` lanes by key. A relay claims lanes with
transaction-level advisory locks, so one relay at a time publishes a lane, in id order, and
deletes what the broker acknowledged in the same transaction. Rows of one key are therefore
published in commit order, provided writers of one key are serialized (a saga's writes are:
they update its row under a version check). Nothing is skipped: the relay does not tail by
id, it takes whatever committed rows remain.

A relay that dies after publishing and before its transaction commits leaves the rows in place:
they are published again (at-least-once); the receiving inbox drops the duplicate.

No row holds up the others. A row the broker rejects for good (too large, invalid topic) is
moved to ``sagakit_outbox_parked`` with the reason, where an operator sees it
(``sagakit outbox parked``) and can requeue it. A row that fails while the rest of its batch
goes through is kept and retried, and parked after ``max_attempts`` such failures (a
failure of the whole batch is an outage and counts against no row). Rows behind a parked
or retried row, of its key too, keep flowing: progress over per-key order for the one row
that cannot be sent; its saga notices the missing message through its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg
from opentelemetry.trace import Span

from sagakit import tracing
from sagakit.aio import sleep_or_stop
from sagakit.db.pool import Connection
from sagakit.errors import SagakitError
from sagakit.messaging.codec import encode_value, pack_headers, unpack_headers
from sagakit.messaging.envelope import Envelope
from sagakit.messaging.transport.port import OutgoingRecord, Producer, PublishFailed

log = logging.getLogger(__name__)

LANES = 32
CHANNEL = "sagakit_outbox"
_LOCK_CLASS = 0x5A6A

_INSERT = """
INSERT INTO sagakit_outbox (lane, topic, key, message_id, value, headers)
SELECT * FROM unnest($1::smallint[], $2::text[], $3::bytea[], $4::uuid[], $5::bytea[], $6::bytea[])
"""

_CLAIM = f"""
SELECT id, topic, key, value, headers, attempts FROM sagakit_outbox
WHERE lane IN (
    SELECT l.lane FROM (SELECT DISTINCT lane FROM sagakit_outbox) l
    WHERE pg_try_advisory_xact_lock({_LOCK_CLASS}, l.lane)
)
ORDER BY id
LIMIT $1
FOR UPDATE
"""

_DELETE = "DELETE FROM sagakit_outbox WHERE id = ANY($1::bigint[])"

_PARK = """
WITH gone AS (DELETE FROM sagakit_outbox WHERE id = ANY($1::bigint[]) RETURNING *)
INSERT INTO sagakit_outbox_parked
    (id, topic, key, message_id, value, headers, created_at, attempts, error)
SELECT g.id, g.topic, g.key, g.message_id, g.value, g.headers, g.created_at, g.attempts + 1,
       e.error
FROM gone g JOIN unnest($1::bigint[], $2::text[]) AS e(id, error) ON e.id = g.id
"""

_COUNT_FAILURE = """
UPDATE sagakit_outbox o SET attempts = o.attempts + 1, last_error = e.error
FROM unnest($1::bigint[], $2::text[]) AS e(id, error) WHERE o.id = e.id
"""

Row = tuple[str, bytes, uuid.UUID, bytes, Sequence[tuple[str, bytes | None]]]
"""An already encoded record: ``(topic, key, message_id, value, headers)``."""


def lane_of(key: bytes) -> int:
    return zlib.crc32(key) % LANES


def storable_text(text: str, limit: int = 2000) -> str:
    """``text`` made safe for a PostgreSQL ``text`` column (no NUL), and bounded."""
    return text.replace("\x00", "\\0")[:limit]


async def add(tx: Connection, *messages: Envelope) -> None:
    """Queue ``messages`` for publication. Call inside the transaction whose effects they
    announce: they are published if and only if it commits. Each carries the current
    trace context (the handler's span, the saga's start)."""
    if not messages:
        return
    await add_raw(
        tx,
        [
            (
                m.topic,
                m.key.encode(),
                m.message_id,
                encode_value(m),
                [(k, v.encode()) for k, v in tracing.inject(m.headers).items()],
            )
            for m in messages
        ],
    )


def _traced(record: OutgoingRecord) -> tuple[OutgoingRecord, Span]:
    """The record under a publish span of its own (a child of the context it was written
    in), which it carries on instead; the span ends once the batch is sent."""
    text = {k: v.decode(errors="replace") for k, v in record.headers if v is not None}
    span, carried = tracing.start_publish(record.topic, text)
    kept = [(k, v) for k, v in record.headers if k not in tracing.FIELDS]
    headers = (*kept, *((k, v.encode()) for k, v in carried.items() if k in tracing.FIELDS))
    return OutgoingRecord(record.topic, record.key, record.value, headers), span


async def park_raw(tx: Connection, row: Row, error: str) -> None:
    """Put a record straight into ``sagakit_outbox_parked`` (when even queueing it for the
    dead-letter topic failed): kept for an operator, never sent on its own."""
    topic, key, message_id, value, headers = row
    await tx.execute(
        "INSERT INTO sagakit_outbox_parked"
        " (id, topic, key, message_id, value, headers, created_at, attempts, error)"
        " VALUES (nextval(pg_get_serial_sequence('sagakit_outbox', 'id')),"
        " $1, $2, $3, $4, $5, now(), 0, $6)",
        topic,
        key,
        message_id,
        value,
        pack_headers(headers),
        storable_text(error),
    )


async def parked(conn: Connection, limit: int = 100) -> list[asyncpg.Record]:
    """Parked rows, oldest first (operator tools)."""
    return list(
        await conn.fetch(
            "SELECT id, topic, key, message_id, octet_length(value) AS size, attempts, error,"
            " parked_at FROM sagakit_outbox_parked ORDER BY id LIMIT $1",
            limit,
        )
    )


async def requeue(conn: Connection, row_id: int | None = None, *, topic: str | None = None) -> int:
    """Move parked rows back into the outbox once their cause is fixed: the row
    ``row_id``, or every row (of ``topic``, if given). Returns how many moved."""
    async with conn.transaction():
        rows = await conn.fetch(
            "DELETE FROM sagakit_outbox_parked WHERE ($1::bigint IS NULL OR id = $1)"
            " AND ($2::text IS NULL OR topic = $2) RETURNING *",
            row_id,
            topic,
        )
        await conn.executemany(
            "INSERT INTO sagakit_outbox (lane, topic, key, message_id, value, headers, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            [
                (
                    lane_of(r["key"]),
                    r["topic"],
                    r["key"],
                    r["message_id"],
                    r["value"],
                    r["headers"],
                    r["created_at"],
                )
                for r in sorted(rows, key=lambda r: r["id"])
            ],
        )
    return len(rows)


async def add_raw(tx: Connection, rows: Sequence[Row]) -> None:
    """Queue already-encoded records, whatever bytes their key and headers hold."""
    if not rows:
        return
    await tx.execute(
        _INSERT,
        [lane_of(r[1]) for r in rows],
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [pack_headers(r[4]) for r in rows],
    )


@dataclass
class RelayStats:
    published: int = 0
    parked: int = 0
    """Rows moved to ``sagakit_outbox_parked`` by this relay."""
    failed_sends: int = 0
    """Rows that failed while others in their batch went through (kept and retried)."""
    listens: int = 0
    """LISTEN connections established (more than one: it was re-established)."""


class OutboxRelay:
    """Publishes committed outbox rows in batches. Wakes on NOTIFY (a dedicated connection
    to ``listen_url``, re-established when it drops), polls every ``poll_interval`` as a
    fallback. Safe to run several at once against one database."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: Producer,
        *,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        retry_delay: float = 0.5,
        max_attempts: int = 20,
        listen_url: str | None = None,
        relisten_interval: float = 2.0,
    ) -> None:
        self.pool = pool
        self.producer = producer
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.retry_delay = retry_delay
        self.max_attempts = max_attempts
        """Failures of one row (while its batch went through) before it is parked."""
        self.listen_url = listen_url
        self.relisten_interval = relisten_interval
        self.stats = RelayStats()
        self.last_ok = time.monotonic()
        """When the relay last emptied the outbox (health checks read it)."""
        self._wake = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._last_listen = -relisten_interval

    @property
    def published(self) -> int:
        return self.stats.published

    @property
    def listening(self) -> bool:
        return self._listener is not None and not self._listener.is_closed()

    def wake(self) -> None:
        """Publish now: call after committing outbox rows in this process. NOTIFY reaches
        the relay too, but only some milliseconds later; it remains the way other
        processes' rows are noticed."""
        self._wake.set()

    async def publish_once(self) -> int:
        """Claim, publish and delete one batch; park what the broker refuses; return how
        many rows were claimed."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_CLAIM, self.batch_size)
            if not rows:
                return 0
            records = [
                OutgoingRecord(r["topic"], r["key"], r["value"], unpack_headers(r["headers"]))
                for r in rows
            ]
            spans = []
            if tracing.exporting:
                traced = [_traced(r) for r in records]
                records, spans = [r for r, _ in traced], [sp for _, sp in traced]
            failures: Mapping[int, SagakitError] = {}
            try:
                await self.producer.send_many(records)
            except PublishFailed as exc:
                failures = exc.failures
            finally:
                for sp in spans:
                    sp.end()
            sent = [r["id"] for i, r in enumerate(rows) if i not in failures]
            if not sent and failures and all(f.retriable for f in failures.values()):
                raise PublishFailed(failures)  # nothing went through: an outage, not the rows
            await conn.execute(_DELETE, sent)
            park: dict[int, str] = {}
            retry: dict[int, str] = {}
            for i, why in failures.items():
                row = rows[i]
                if not why.retriable or row["attempts"] + 1 >= self.max_attempts:
                    park[row["id"]] = storable_text(str(why))
                elif sent:  # others went through: this row's own failure
                    retry[row["id"]] = storable_text(str(why))
            if park:
                await conn.execute(_PARK, list(park), list(park.values()))
                log.error("outbox: parked %d row(s) the broker refuses: %s", len(park), park)
            if retry:
                await conn.execute(_COUNT_FAILURE, list(retry), list(retry.values()))
        self.stats.published += len(sent)
        self.stats.parked += len(park)
        self.stats.failed_sends += len(retry)
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
        try:
            while not stop.is_set():
                self._wake.clear()
                await self._keep_listening()
                try:
                    await self.drain()
                    self.last_ok = time.monotonic()
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
            if self._listener is not None:
                with contextlib.suppress(Exception):
                    await self._listener.close()

    async def _keep_listening(self) -> None:
        """(Re)connect the LISTEN connection: a database restart closes it, and without it
        every hop would wait for the poll."""
        if self.listen_url is None or self.listening:
            return
        now = time.monotonic()
        if now - self._last_listen < self.relisten_interval:
            return
        self._last_listen = now
        try:
            listener: asyncpg.Connection = await asyncpg.connect(self.listen_url, timeout=5)
            await listener.add_listener(CHANNEL, lambda *_: self.wake())
            listener.add_termination_listener(lambda *_: self.wake())  # to listen again
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("outbox relay: LISTEN unavailable (%r); polling meanwhile", exc)
            return
        if self._listener is not None:
            log.info("outbox relay: LISTEN re-established")
        self._listener = listener
        self.stats.listens += 1
        self.wake()  # rows may have been committed while nobody listened
