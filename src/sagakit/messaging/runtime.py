"""The consumer runtime: poll, handle through the inbox, commit, never die of one message.

Per poll, records are handled in order, one partition after another. Fast path: one database
transaction for the whole poll (one inbox row per message inside it): few commits, and no
lock waits or deadlocks between this consumer's own transactions. If anything in it fails,
the transaction rolls back and the records are handled one per transaction, so a bad
message costs only itself:

- the database unreachable (``Disposition.OUTAGE``): waited out, with backoff, without limit
  (not the message's fault);
- ``RETRY`` (races, deadlocks, command timeouts, unexpected bugs): retried with exponential
  backoff and jitter, up to the policy's limit;
- ``PERMANENT`` or exhausted: the record goes to the dead-letter topic, byte for byte, with
  the error and its origin in extra headers, written through the outbox in the same
  transaction as its inbox row (so it is dead-lettered once even if redelivered). A record
  that cannot even be decoded goes there at once. Later records of the same key go on:
  progress over per-key order for the one record that cannot be handled.

The classification is :func:`sagakit.messaging.retry.classify`.

Kafka offsets are committed only after the database commit (every ``commit_interval``, not
after every poll). A crash in between means redelivery, and the inbox turns the redelivery
into a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg
from opentelemetry.trace import SpanKind

from sagakit import metrics, tracing
from sagakit.aio import sleep_or_stop
from sagakit.db.pool import Connection, transaction
from sagakit.errors import MessageError
from sagakit.messaging import codec, inbox, outbox
from sagakit.messaging.envelope import Envelope, derived_id
from sagakit.messaging.logcontext import handling
from sagakit.messaging.retry import Disposition, RetryPolicy, classify, is_outage
from sagakit.messaging.router import MessageContext, Route, Router
from sagakit.messaging.transport.port import Consumer, Record, TopicPartition, Transport
from sagakit.topics import DEAD_LETTERS, topic_name

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ConsumerOptions:
    max_records: int = 500
    """Most records taken per poll, across partitions."""
    poll_timeout_ms: int = 100
    """How long a poll waits for records; also how soon a stop request is noticed."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    dead_letter_topic: str = DEAD_LETTERS
    """Where undeliverable records go (prefixed with the router's namespace)."""
    commit_interval: float = 0.05
    """Seconds between Kafka offset commits (and at once when idle). Committing after every
    poll puts a broker round trip on every batch's critical path; committing less often
    only means more redelivered records after a crash, which the inbox drops."""
    batch_transactions: bool = True
    """Handle each poll's records in one transaction (falls back to one per message)."""


@dataclass
class ConsumerStats:
    handled: int = 0
    duplicates: int = 0
    retries: int = 0
    dead_lettered: int = 0
    skipped: int = 0
    """Records that could be neither handled nor parked (logged with their offset)."""
    batches: int = 0
    commit_conflicts: int = 0


@dataclass(frozen=True)
class _Parsed:
    envelope: Envelope
    route: Route
    payload: Any


class _Stopping(Exception):
    pass


class ConsumerRuntime:
    def __init__(
        self,
        *,
        group: str,
        router: Router,
        transport: Transport,
        pool: asyncpg.Pool,
        options: ConsumerOptions | None = None,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.group = group
        self.on_commit = on_commit or (lambda: None)
        """Called after each transaction that wrote outbox rows (the host wakes its relay)."""
        self.router = router
        self.transport = transport
        self.pool = pool
        self.options = options or ConsumerOptions()
        self.stats = ConsumerStats()
        self.consumer: Consumer | None = None
        """The group member, while running."""
        self.last_poll: float = 0.0
        """Monotonic time of the last successful poll (health checks read it)."""
        self._stop = asyncio.Event()

    # -- loop ----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        self._stop = stop
        consumer = self.consumer = self.transport.consumer(self.group, self.router.topics)
        await consumer.start()
        if ready is not None:
            ready.set()
        pending: dict[TopicPartition, int] = {}
        last_commit = time.monotonic()
        errors = 0

        async def commit() -> None:
            nonlocal last_commit
            if pending and not await consumer.commit(pending):
                self.stats.commit_conflicts += 1
            pending.clear()
            last_commit = time.monotonic()

        try:
            while not stop.is_set():
                try:
                    batches = await consumer.poll(
                        max_records=self.options.max_records,
                        timeout_ms=self.options.poll_timeout_ms,
                    )
                    self.last_poll = time.monotonic()
                    if batches:
                        pending.update(await self._process_all(batches))
                    due = time.monotonic() - last_commit >= self.options.commit_interval
                    if pending and (due or not batches):
                        await commit()
                except Exception:
                    errors += 1
                    if errors >= 20:  # ~10 s: a fresh client may do better (the supervisor)
                        raise
                    log.exception("consumer %s: poll loop error; continuing", self.group)
                    await sleep_or_stop(stop, 0.5)
                else:
                    errors = 0
            with contextlib.suppress(Exception):
                await commit()
        finally:
            await consumer.stop()

    async def _process_all(
        self, batches: dict[TopicPartition, list[Record]]
    ) -> dict[TopicPartition, int]:
        """Handle a poll's records; return the next offset to commit per partition."""
        by_partition = {
            tp: [(r, self._parse(r)) for r in records] for tp, records in batches.items()
        }
        parsed = [p for items in by_partition.values() for _, p in items]
        if (
            self.options.batch_transactions
            and len(parsed) > 1
            and all(isinstance(p, _Parsed) for p in parsed)
        ):
            try:
                return await self._in_one_transaction(batches, parsed)
            except Exception as exc:
                log.debug(
                    "consumer %s: batch of %d failed (%r); one by one", self.group, len(parsed), exc
                )
        offsets: dict[TopicPartition, int] = {}
        for tp, items in by_partition.items():
            nxt = await self._one_by_one(items)
            if nxt is not None:
                offsets[tp] = nxt
            if self._stop.is_set():
                break
        return offsets

    async def _in_one_transaction(
        self,
        batches: dict[TopicPartition, list[Record]],
        items: list[_Parsed | Exception],
    ) -> dict[TopicPartition, int]:
        parsed = [p for p in items if isinstance(p, _Parsed)]
        handled = 0
        out: list[Envelope] = []
        async with transaction(self.pool) as conn:
            fresh = await inbox.claim_many(
                conn, self.group, [p.envelope.message_id for p in parsed]
            )
            for p in parsed:
                if p.envelope.message_id in fresh:
                    fresh.discard(p.envelope.message_id)  # a repeat in this batch is a dup
                    await self._run_handler(conn, p, out)
                    handled += 1
            await outbox.add(conn, *out)
        if out:
            self.on_commit()
        dups = len(parsed) - handled
        self.stats.handled += handled
        self.stats.duplicates += dups
        self.stats.batches += 1
        return {tp: records[-1].offset + 1 for tp, records in batches.items()}

    async def _one_by_one(self, items: Sequence[tuple[Record, _Parsed | Exception]]) -> int | None:
        """Handle one partition's records, one transaction each; return the next offset."""
        for n, (rec, parsed) in enumerate(items):
            try:
                await self._one(rec, parsed)
            except _Stopping:
                return rec.offset if n > 0 else None
        return items[-1][0].offset + 1

    # -- one message ---------------------------------------------------------------------
    def _parse(self, rec: Record) -> _Parsed | Exception:
        if rec.unreadable is not None:
            return MessageError(f"the client library cannot decode this record: {rec.unreadable}")
        try:
            env = codec.decode(rec.topic, rec.key, rec.value, rec.headers)
            route = self.router.route(env)
            return _Parsed(env, route, route.parse(env))
        except Exception as exc:
            return exc

    async def _handle(self, conn: Connection, p: _Parsed) -> bool:
        """Inbox claim + handler + its outbox rows, in the caller's transaction. False for a
        duplicate."""
        if not await inbox.claim(conn, self.group, p.envelope.message_id):
            return False
        out: list[Envelope] = []
        await self._run_handler(conn, p, out)
        await outbox.add(conn, *out)
        return True

    async def _run_handler(self, conn: Connection, p: _Parsed, out: list[Envelope]) -> None:
        ctx = MessageContext(
            p.envelope, conn, self.group, self.router.namespace, out, p.route.replies
        )
        env, began = p.envelope, time.perf_counter()
        with (
            handling(env),
            tracing.span(
                f"handle {env.type}",
                parent=env.headers,
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.destination.name": env.topic,
                    "messaging.message.id": str(env.message_id),
                    "sagakit.saga_id": env.correlation_id,
                    "sagakit.group": self.group,
                },
            ),
        ):
            written = len(out)
            await p.route.handler(ctx, p.payload)
            # What it sent carries its span (written to the outbox after it returns).
            out[written:] = [replace(m, headers=tracing.inject(m.headers)) for m in out[written:]]
        metrics.handled(env.type, time.perf_counter() - began)

    async def _one(self, rec: Record, parsed: _Parsed | Exception) -> None:
        if isinstance(parsed, Exception):
            await self._dead_letter(rec, parsed, attempts=0)
            return
        policy = self.options.retry
        attempt = outage = 0
        while True:
            try:
                async with transaction(self.pool) as conn:
                    first = await self._handle(conn, parsed)
                if first:
                    self.on_commit()
                    self.stats.handled += 1
                else:
                    self.stats.duplicates += 1
                return
            except Exception as exc:
                disposition = classify(exc)
                if disposition is Disposition.OUTAGE:
                    # The database is unreachable: not the message's fault. Wait it out
                    # (the partition waits too) instead of spending the message's attempts.
                    outage += 1
                    if outage == 1 or outage % 20 == 0:
                        log.warning(
                            "consumer %s: database unreachable (%r); waiting", self.group, exc
                        )
                    self.stats.retries += 1
                    await self._pause(policy.delay(min(outage, 10)))
                    continue
                attempt += 1
                if disposition is Disposition.PERMANENT or attempt >= policy.max_attempts:
                    log.warning(
                        "consumer %s: %s %s failed after %d attempt(s), dead-lettering: %r",
                        self.group,
                        parsed.envelope.type,
                        parsed.envelope.message_id,
                        attempt,
                        exc,
                    )
                    await self._dead_letter(rec, exc, attempts=attempt, env=parsed.envelope)
                    return
                self.stats.retries += 1
                await self._pause(policy.delay(attempt))

    async def _dead_letter(
        self, rec: Record, exc: BaseException, *, attempts: int, env: Envelope | None = None
    ) -> None:
        """Copy the record, byte for byte, to the dead-letter topic (via the outbox) exactly
        once, with why and where from in extra headers. If even that keeps failing (not for
        an outage), the copy goes to the outbox's parking table instead: the partition must
        move on either way."""
        message_id = env.message_id if env else derived_id(rec.topic, rec.partition, rec.offset)
        extra = {
            "sagakit.dlq.error": type(exc).__name__,
            "sagakit.dlq.reason": str(exc)[:2000],
            "sagakit.dlq.topic": rec.topic,
            "sagakit.dlq.partition": str(rec.partition),
            "sagakit.dlq.offset": str(rec.offset),
            "sagakit.dlq.group": self.group,
            "sagakit.dlq.attempts": str(attempts),
        }
        row: outbox.Row = (
            topic_name(self.router.namespace, self.options.dead_letter_topic),
            rec.key or b"",
            uuid.uuid4(),
            rec.value or b"",
            [*rec.headers, *((k, v.encode("utf-8", "replace")) for k, v in extra.items())],
        )
        delay = self.options.retry.initial_delay
        failures = 0
        while True:
            try:
                async with transaction(self.pool) as conn:
                    if await inbox.claim(conn, self.group, message_id, dead_lettered=True):
                        if failures < self.options.retry.max_attempts:
                            await outbox.add_raw(conn, [row])
                        else:
                            await outbox.park_raw(conn, row, f"dead-lettering failed: {exc!r}")
                        self.stats.dead_lettered += 1
                self.on_commit()
                return
            except Exception as err:
                if not is_outage(err):
                    failures += 1
                if failures >= 2 * self.options.retry.max_attempts:
                    # Not even the parking table takes it: the partition must not stop.
                    # The record stays on the broker at its offset, which the log names.
                    log.critical(
                        "consumer %s: cannot park %s[%d]@%d anywhere (%r); skipped",
                        self.group,
                        rec.topic,
                        rec.partition,
                        rec.offset,
                        err,
                    )
                    self.stats.skipped += 1
                    return
                log.exception("consumer %s: cannot dead-letter yet; retrying", self.group)
                await self._pause(delay)
                delay = min(delay * 2, self.options.retry.max_delay)

    async def _pause(self, seconds: float) -> None:
        await sleep_or_stop(self._stop, seconds)
        if self._stop.is_set():
            raise _Stopping
