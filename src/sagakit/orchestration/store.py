"""Saga state in PostgreSQL: one row per saga with a version column (optimistic
concurrency), and a log of every transition."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg

from sagakit import metrics, tracing
from sagakit.db import Connection
from sagakit.errors import ConcurrencyConflict
from sagakit.messaging import Envelope, codec
from sagakit.saga import Decision, SagaDefinition, SagaState, SagaStatus
from sagakit.saga.state import Member, Progress

_COLUMNS = (
    "saga_id, definition, status, step, attempt, data, reason, started_at, due_at, version,"
    " members, definition_version"
)


def from_row(row: asyncpg.Record) -> SagaState:
    members = {k: Member.from_json(v) for k, v in json.loads(row["members"]).items()}
    if not members and row["status"] in (SagaStatus.RUNNING, SagaStatus.COMPENSATING):
        # Stored before members were: the stage's steps are rebuilt by the orchestrator,
        # which knows them; this placeholder carries the attempt and the timer.
        progress = Progress.SENT if row["status"] == SagaStatus.RUNNING else Progress.UNDOING
        members = {LEGACY: Member(progress, row["attempt"], row["attempt"], row["due_at"])}
    return SagaState(
        saga_id=row["saga_id"],
        definition=row["definition"],
        status=SagaStatus(row["status"]),
        step=row["step"],
        members=members,
        data=json.loads(row["data"]),
        reason=row["reason"],
        started_at=row["started_at"],
        version=row["version"],
        definition_version=row["definition_version"],
    )


LEGACY = "*"
"""Member name standing for every step of the stage of a saga stored before members were."""


@dataclass(frozen=True)
class LogEntry:
    """One line of a saga's timeline."""

    step: str
    event: str
    note: str
    commands: Sequence[str]
    messages: Mapping[str, Any] | None = None
    """What the transition received and the commands it sent, with their payloads."""


def entry(
    definition: SagaDefinition,
    decision: Decision,
    event: str,
    received: Mapping[str, Any] | None = None,
) -> LogEntry:
    """The log line of ``decision``, taken on ``event`` (whose payload was ``received``)."""
    step = definition.stage_name(decision.state.step)
    sent = [
        {"type": c.type, "step": c.step, "attempt": c.attempt, "payload": dict(c.payload)}
        for c in decision.commands
    ]
    messages = {"received": dict(received) if received is not None else None, "sent": sent}
    return LogEntry(step, event, decision.note, [c.type for c in decision.commands], messages)


MAX_LOGGED = 256 * 1024
"""Characters of payloads a log line keeps at most."""


def loggable(messages: Mapping[str, Any]) -> str:
    """``messages`` as JSON PostgreSQL takes, whatever they hold: a payload it cannot store
    (NaN or infinity, which its ``json`` refuses; something not JSON at all; more than
    :data:`MAX_LOGGED`) is noted instead, so that keeping the log never fails a saga's
    transition."""
    try:
        text = json.dumps(messages, default=str, allow_nan=False)
    except (ValueError, TypeError, RecursionError) as exc:
        return json.dumps({"unrecorded": f"payloads not kept: {exc!r}"[:500]})
    if len(text) > MAX_LOGGED:
        return json.dumps({"unrecorded": f"payloads not kept: {len(text)} characters"})
    return text


_LOG = """
, logged AS (
    INSERT INTO saga_log (saga_id, version, status, step, event, note, commands, messages)
    SELECT $1, written.version, $3, $11, $12, $13, $14, $17 FROM written
)
SELECT version FROM written
"""


def _args(s: SagaState, entry: LogEntry) -> tuple[object, ...]:
    return (
        s.saga_id,
        s.version,
        s.status.value,
        s.step,
        s.attempt,
        json.dumps(s.data),
        s.reason,
        s.started_at,
        s.due_at,
        s.definition,
        entry.step,
        entry.event,
        entry.note,
        list(entry.commands),
        json.dumps({k: m.to_json() for k, m in s.members.items()}),
        s.definition_version,
        None if entry.messages is None else loggable(entry.messages),
    )


async def insert(tx: Connection, s: SagaState, entry: LogEntry) -> SagaState | None:
    """Store a new saga and its first log line in one statement; None if a saga with this
    id exists already."""
    version = await tx.fetchval(
        "WITH written AS ("
        f" INSERT INTO sagas ({_COLUMNS}, start_data, trace)"
        " VALUES ($1, $10, $3, $4, $5, $6, $7, $8, $9, $2 + 1, $15, $16, $6, $18)"
        " ON CONFLICT (saga_id) DO NOTHING RETURNING version)" + _LOG,
        *_args(s, entry),
        tracing.traceparent(),  # where it started: its timers continue that trace
    )
    if version is None:
        return None
    metrics.saga_saved(s, entry.commands, started=True)
    return s.evolve(version=version)


async def load(tx: Connection, saga_id: str, *, lock: bool = False) -> SagaState | None:
    """The saga's state; ``lock``: held until ``tx`` ends."""
    lock_clause = " FOR UPDATE" if lock else ""
    row = await tx.fetchrow(
        f"SELECT {_COLUMNS} FROM sagas WHERE saga_id = $1{lock_clause}", saga_id
    )
    return from_row(row) if row else None


async def load_parked(
    tx: Connection, saga_id: str, *, lock: bool = False
) -> tuple[SagaState | None, str | None]:
    """The saga's state and why it is parked (None if it is not), in one round trip;
    ``lock``: held until ``tx`` ends."""
    lock_clause = " FOR UPDATE" if lock else ""
    row = await tx.fetchrow(
        f"SELECT {_COLUMNS}, parked FROM sagas WHERE saga_id = $1{lock_clause}", saga_id
    )
    return (from_row(row), row["parked"]) if row else (None, None)


async def save(tx: Connection, s: SagaState, entry: LogEntry) -> SagaState:
    """Write ``s`` over the version it was derived from, and its log line, in one statement;
    raise :class:`ConcurrencyConflict` (retriable) if someone else wrote first."""
    version = await tx.fetchval(
        "WITH written AS ("
        " UPDATE sagas SET status = $3, step = $4, attempt = $5, data = $6, reason = $7,"
        " due_at = $9, members = $15, version = version + 1, updated_at = now(), parked = NULL,"
        " timer_sent_at = NULL"
        # definition, its version and started_at never change; matching them keeps one
        # argument list for both statements.
        " WHERE saga_id = $1 AND version = $2 AND definition = $10 AND started_at = $8"
        " AND definition_version = $16"
        " RETURNING version)" + _LOG,
        *_args(s, entry),
    )
    if version is None:
        raise ConcurrencyConflict(f"saga {s.saga_id} changed since version {s.version}")
    metrics.saga_saved(s, entry.commands, started=False)
    return s.evolve(version=version)


async def started_with(tx: Connection, saga_id: str, data: Mapping[str, Any]) -> bool:
    """Whether saga ``saga_id`` exists and started with ``data`` (a saga stored before its
    start data was kept counts as a match)."""
    row = await tx.fetchrow("SELECT start_data FROM sagas WHERE saga_id = $1", saga_id)
    if row is None:
        return False
    return row["start_data"] is None or json.loads(row["start_data"]) == dict(data)


async def park(tx: Connection, saga_id: str, step: str, reason: str) -> None:
    """Set the saga aside: its timer stops and replies are ignored until it is resumed.
    The reason goes to the saga row and its log."""
    await tx.execute(
        "WITH written AS (UPDATE sagas SET parked = $2, due_at = NULL, version = version + 1,"
        " updated_at = now() WHERE saga_id = $1 RETURNING version, status)"
        " INSERT INTO saga_log (saga_id, version, status, step, event, note, commands)"
        " SELECT $1, version, status, $3, 'parked', $2, '{}' FROM written",
        saga_id,
        reason,
        step,
    )


async def note(tx: Connection, saga_id: str, step: str, event: str, text: str) -> None:
    """A line in the saga's log that changes nothing (a reply ignored while parked)."""
    await tx.execute(
        "INSERT INTO saga_log (saga_id, version, status, step, event, note, commands)"
        " SELECT $1, version, status, $2, $3, $4, '{}' FROM sagas WHERE saga_id = $1",
        saga_id,
        step,
        event,
        text,
    )


async def parked(tx: Connection, limit: int = 100) -> list[asyncpg.Record]:
    """Parked sagas, oldest first (operator tools)."""
    return list(
        await tx.fetch(
            "SELECT saga_id, status, step, parked, updated_at FROM sagas"
            " WHERE parked IS NOT NULL ORDER BY updated_at LIMIT $1",
            limit,
        )
    )


async def prune(tx: Connection, older_than: timedelta, batch: int = 1000) -> int:
    """Forget finished sagas (and their log) last changed before ``older_than`` ago; at
    most ``batch`` sagas per call."""
    removed: int = await tx.fetchval(
        "WITH gone AS (DELETE FROM sagas WHERE saga_id IN (SELECT saga_id FROM sagas"
        " WHERE status IN ('COMPLETED', 'FAILED') AND updated_at < now() - $1::interval"
        " ORDER BY updated_at LIMIT $2) RETURNING saga_id),"
        " log AS (DELETE FROM saga_log WHERE saga_id IN (SELECT saga_id FROM gone)),"
        " held AS (DELETE FROM saga_held_events WHERE saga_id IN (SELECT saga_id FROM gone))"
        " SELECT count(*) FROM gone",
        older_than,
        batch,
    )
    return removed


async def due(tx: Connection, now: float, limit: int) -> list[asyncpg.Record]:
    """Rows of sagas whose timer fired, locked for this transaction; rows another replica
    holds are skipped. Rows, not states: the caller converts each on its own, so that one
    row this build cannot read is parked instead of failing them all."""
    return list(
        await tx.fetch(
            f"SELECT {_COLUMNS}, trace FROM sagas WHERE due_at <= $1 ORDER BY due_at LIMIT $2"
            " FOR UPDATE SKIP LOCKED",
            now,
            limit,
        )
    )


async def listing(
    tx: Connection, status: str | None = None, limit: int = 50
) -> tuple[list[asyncpg.Record], dict[str, int]]:
    """Newest sagas first (optionally of one status), and the count per status."""
    rows = await tx.fetch(
        "SELECT saga_id, definition, status, step, attempt, reason, parked, updated_at"
        " FROM sagas WHERE $1::text IS NULL OR status = $1 ORDER BY updated_at DESC LIMIT $2",
        status.upper() if status else None,
        limit,
    )
    counts = await tx.fetch("SELECT status, count(*) AS n FROM sagas GROUP BY status")
    return list(rows), {r["status"]: r["n"] for r in counts}


async def timeline(
    tx: Connection, saga_id: str
) -> tuple[asyncpg.Record, list[asyncpg.Record]] | None:
    """A saga's row and every line of its log, oldest first; None if there is no such saga."""
    row = await tx.fetchrow("SELECT * FROM sagas WHERE saga_id = $1", saga_id)
    if row is None:
        return None
    log = await tx.fetch(
        "SELECT id, version, status, step, event, note, commands, at, messages FROM saga_log"
        " WHERE saga_id = $1 ORDER BY id",
        saga_id,
    )
    return row, list(log)


async def due_unannounced(tx: Connection, now: float, limit: int) -> list[asyncpg.Record]:
    """Sagas whose timer is due and for which no timer event went out in the last
    ``RESEND_TIMER_AFTER`` seconds, locked for this transaction (replicas skip them)."""
    return list(
        await tx.fetch(
            "SELECT saga_id, definition, definition_version, due_at, trace FROM sagas"
            " WHERE due_at <= $1 AND parked IS NULL"
            " AND (timer_sent_at IS NULL OR timer_sent_at < $1 - $3)"
            " ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            now,
            limit,
            RESEND_TIMER_AFTER,
        )
    )


RESEND_TIMER_AFTER = 5.0
"""Seconds after which a timer event that changed nothing (it met a newer state, or was
lost with the broker) is published again."""


async def timer_announced(tx: Connection, saga_ids: Sequence[str], now: float) -> None:
    await tx.execute(
        "UPDATE sagas SET timer_sent_at = $2 WHERE saga_id = ANY($1::text[])", list(saga_ids), now
    )


async def record_mode(tx: Connection, mode: str) -> None:
    """The mode the service keeping these sagas runs in (operator tools read it)."""
    await tx.execute(
        "INSERT INTO saga_settings (key, value) VALUES ('mode', $1)"
        " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        mode,
    )


async def recorded_mode(tx: Connection) -> str | None:
    """The mode recorded by :func:`record_mode`, if the service ever started (since it
    records one)."""
    try:
        mode: str | None = await tx.fetchval("SELECT value FROM saga_settings WHERE key = 'mode'")
    except asyncpg.UndefinedTableError:
        return None
    return mode


async def hold(tx: Connection, env: Envelope) -> None:
    """Keep an event a copy cannot follow yet (choreography), in stream order."""
    await tx.execute(
        "INSERT INTO saga_held_events (saga_id, topic, key, value, headers)"
        " VALUES ($1, $2, $3, $4, $5)",
        env.key,
        env.topic,
        env.key.encode(),
        codec.encode_value(env),
        codec.pack_headers([(k, v.encode()) for k, v in env.headers.items()]),
    )


async def holding(tx: Connection, saga_id: str) -> bool:
    return bool(await tx.fetchval("SELECT 1 FROM saga_held_events WHERE saga_id = $1", saga_id))


async def take_held(tx: Connection, saga_id: str) -> list[Envelope]:
    """The held events of a saga, oldest first; they are no longer held."""
    rows = await tx.fetch("DELETE FROM saga_held_events WHERE saga_id = $1 RETURNING *", saga_id)
    return [
        codec.decode(r["topic"], r["key"], r["value"], codec.unpack_headers(r["headers"]))
        for r in sorted(rows, key=lambda r: r["seq"])
    ]


async def unpark(tx: Connection, saga_id: str) -> None:
    """Take a copy back without a decision (it will apply the events it held)."""
    await tx.execute(
        "UPDATE sagas SET parked = NULL, version = version + 1, updated_at = now()"
        " WHERE saga_id = $1",
        saga_id,
    )


async def forget(tx: Connection, saga_id: str) -> None:
    """Drop a copy's state (its log stays): it is rebuilt from the saga's events."""
    await tx.execute("DELETE FROM sagas WHERE saga_id = $1", saga_id)


def trace_of(row: asyncpg.Record) -> dict[str, str]:
    """Headers carrying the trace a saga started in (empty if it was not traced)."""
    return {"traceparent": row["trace"]} if row["trace"] else {}
