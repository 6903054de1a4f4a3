"""The orchestrator's HTTP API: read sagas and their timelines."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request

from sagakit.saga import SagaStatus
from sagakit.services.host import runtime_of

routes = APIRouter()


@routes.get("/sagas/{saga_id}")
async def get_saga(saga_id: str, request: Request) -> dict[str, Any]:
    """A saga's state and every transition it went through."""
    async with runtime_of(request).pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM sagas WHERE saga_id = $1", saga_id)
        if row is None:
            raise HTTPException(404, f"no saga {saga_id}")
        steps = await conn.fetch(
            "SELECT version, status, step, event, note, commands, at FROM saga_log"
            " WHERE saga_id = $1 ORDER BY id",
            saga_id,
        )
    saga = dict(row)
    saga["data"] = json.loads(saga["data"])
    return {"saga": saga, "log": [dict(s) for s in steps]}


@routes.get("/sagas")
async def list_sagas(
    request: Request,
    status: SagaStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Newest sagas first, and a count per status."""
    async with runtime_of(request).pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT saga_id, status, step, reason, updated_at FROM sagas"
            " WHERE $1::text IS NULL OR status = $1 ORDER BY updated_at DESC LIMIT $2",
            status.value if status else None,
            limit,
        )
        counts = await conn.fetch("SELECT status, count(*) AS n FROM sagas GROUP BY status")
    return {
        "sagas": [dict(r) for r in rows],
        "counts": {r["status"]: r["n"] for r in counts},
    }
