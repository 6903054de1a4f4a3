"""Saga state in PostgreSQL: one row per saga with a version column (optimistic
concurrency), and a log of every transition."""

from __future__ import annotations

import json
from collections.abc import Sequence

import asyncpg

from sagakit.db import Connection
from sagakit.errors import ConcurrencyConflict
from sagakit.saga import SagaState, SagaStatus

_COLUMNS = "saga_id, definition, status, step, attempt, data, reason, started_at, due_at, version"


def _state(row: asyncpg.Record) -> SagaState:
    return SagaState(
        saga_id=row["saga_id"],
        definition=row["definition"],
        status=SagaStatus(row["status"]),
        step=row["step"],
        attempt=row["attempt"],
        data=json.loads(row["data"]),
        reason=row["reason"],
        started_at=row["started_at"],
        due_at=row["due_at"],
        version=row["version"],
    )


async def insert(tx: Connection, s: SagaState) -> bool:
    """Store a new saga; False if one with this id exists already."""
    created = await tx.fetchval(
        f"INSERT INTO sagas ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1)"
        " ON CONFLICT (saga_id) DO NOTHING RETURNING true",
        s.saga_id,
        s.definition,
        s.status.value,
        s.step,
        s.attempt,
        json.dumps(s.data),
        s.reason,
        s.started_at,
        s.due_at,
    )
    return bool(created)


async def load(tx: Connection, saga_id: str) -> SagaState | None:
    row = await tx.fetchrow(f"SELECT {_COLUMNS} FROM sagas WHERE saga_id = $1", saga_id)
    return _state(row) if row else None


async def save(tx: Connection, s: SagaState) -> SagaState:
    """Write ``s`` over the version it was derived from; raise :class:`ConcurrencyConflict`
    (retriable) if someone else wrote first."""
    updated = await tx.fetchval(
        "UPDATE sagas SET status = $3, step = $4, attempt = $5, data = $6, reason = $7,"
        " due_at = $8, version = version + 1, updated_at = now()"
        " WHERE saga_id = $1 AND version = $2 RETURNING version",
        s.saga_id,
        s.version,
        s.status.value,
        s.step,
        s.attempt,
        json.dumps(s.data),
        s.reason,
        s.due_at,
    )
    if updated is None:
        raise ConcurrencyConflict(f"saga {s.saga_id} changed since version {s.version}")
    return s.evolve(version=updated)


async def log(
    tx: Connection, s: SagaState, step: str, event: str, note: str, commands: Sequence[str]
) -> None:
    await tx.execute(
        "INSERT INTO saga_log (saga_id, version, status, step, event, note, commands)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        s.saga_id,
        s.version,
        s.status.value,
        step,
        event,
        note,
        list(commands),
    )


async def due(tx: Connection, now: float, limit: int) -> list[SagaState]:
    """Sagas whose timer fired, locked for this transaction; rows another replica holds
    are skipped."""
    rows = await tx.fetch(
        f"SELECT {_COLUMNS} FROM sagas WHERE due_at <= $1 ORDER BY due_at LIMIT $2"
        " FOR UPDATE SKIP LOCKED",
        now,
        limit,
    )
    return [_state(r) for r in rows]
