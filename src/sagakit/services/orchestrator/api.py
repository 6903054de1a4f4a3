"""The orchestrator's HTTP API: read sagas and their timelines."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel

from sagakit import http
from sagakit.saga import SagaStatus
from sagakit.services.host import runtime_of

routes = APIRouter()


class SagaOut(BaseModel):
    saga_id: str
    definition: str
    status: SagaStatus
    step: int
    attempt: int
    data: dict[str, Any]
    reason: str | None = None
    started_at: float
    due_at: float | None = None
    version: int
    updated_at: datetime
    parked: str | None = None


class Transition(BaseModel):
    version: int
    status: SagaStatus
    step: str
    event: str
    note: str
    commands: list[str]
    at: datetime


class Timeline(BaseModel):
    saga: SagaOut
    log: list[Transition]


class SagaSummary(BaseModel):
    saga_id: str
    status: SagaStatus
    step: int
    reason: str | None = None
    updated_at: datetime


class SagaList(BaseModel):
    sagas: list[SagaSummary]
    counts: dict[str, int]


@routes.get(
    "/sagas/{saga_id}",
    response_model=Timeline,
    operation_id="get_saga",
    responses=http.problems(404, 503),
)
async def get_saga(saga_id: http.Identifier, request: Request) -> Timeline:
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
    saga = {k: row[k] for k in SagaOut.model_fields if k in row}
    saga["data"] = json.loads(saga["data"])
    return Timeline(saga=SagaOut(**saga), log=[Transition(**dict(s)) for s in steps])


@routes.get("/sagas", response_model=SagaList, responses=http.problems(503))
async def list_sagas(
    request: Request,
    status: SagaStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> SagaList:
    """Newest sagas first, and a count per status."""
    async with runtime_of(request).pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT saga_id, status, step, reason, updated_at FROM sagas"
            " WHERE $1::text IS NULL OR status = $1 ORDER BY updated_at DESC LIMIT $2",
            status.value if status else None,
            limit,
        )
        counts = await conn.fetch("SELECT status, count(*) AS n FROM sagas GROUP BY status")
    return SagaList(
        sagas=[SagaSummary(**dict(r)) for r in rows],
        counts={r["status"]: r["n"] for r in counts},
    )
