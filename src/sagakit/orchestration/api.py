"""The HTTP API of a service that orchestrates sagas: start one, list them, read one with
its timeline."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Body, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from sagakit import http
from sagakit.saga import SagaDefinition, SagaStatus

if TYPE_CHECKING:
    from sagakit.runtime.host import Runtime


def _runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


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
    definition: str
    status: SagaStatus
    step: int
    reason: str | None = None
    updated_at: datetime


class SagaList(BaseModel):
    sagas: list[SagaSummary]
    counts: dict[str, int]


class SagaStarted(BaseModel):
    saga_id: str
    definition: str
    created: bool
    """False when the Idempotency-Key named a saga that exists already (its id is returned)."""


def routes(definitions: Sequence[SagaDefinition]) -> APIRouter:
    """The endpoints for the sagas of ``definitions``."""
    hosted = {d.name: d for d in definitions}
    r = APIRouter(tags=["sagas"])

    @r.post(
        "/sagas/{definition}",
        response_model=SagaStarted,
        status_code=202,
        operation_id="start_saga",
        responses={
            200: {"model": SagaStarted, "description": "Started before with this key."},
            **http.problems(404, 503, body=True),
            **http.links(
                202, saga=http.link("get_saga", "the saga", saga_id="$response.body#/saga_id")
            ),
        },
    )
    async def start_saga(
        definition: http.Identifier,
        request: Request,
        data: Annotated[dict[str, Any], Body(description="the saga's start data")],
        idempotency_key: Annotated[
            http.IdempotencyKey | None,
            Header(description="makes a retry safe: one saga per key and definition"),
        ] = None,
    ) -> Any:
        """Start a saga of ``definition`` with ``data`` (validated against its model). The
        same ``Idempotency-Key`` names the same saga: a retry answers 200 with its id."""
        from sagakit.orchestration import orchestrator
        from sagakit.runtime.start import saga_id_for, start_data

        found = hosted.get(definition)
        if found is None:
            raise HTTPException(404, f"no saga definition {definition}")
        try:
            body = start_data(found, data)
        except ValidationError as exc:
            raise http.invalid("body", definition, _first_error(exc), data) from None
        saga_id = saga_id_for(found, idempotency_key) if idempotency_key else str(uuid.uuid4())
        rt = _runtime(request)
        retry = "retry with the same Idempotency-Key" if idempotency_key else "the saga may exist"
        async with rt.pool.acquire() as conn, http.transaction(conn, retry=retry):
            created = await orchestrator(rt).begin(conn, found, saga_id, body)
        out = SagaStarted(saga_id=saga_id, definition=found.name, created=created)
        return JSONResponse(out.model_dump(), status_code=202 if created else 200)

    @r.get(
        "/sagas/{saga_id}",
        response_model=Timeline,
        operation_id="get_saga",
        responses=http.problems(404, 503),
    )
    async def get_saga(saga_id: http.Identifier, request: Request) -> Timeline:
        """A saga's state and every transition it went through."""
        async with _runtime(request).pool.acquire() as conn:
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

    @r.get("/sagas", response_model=SagaList, responses=http.problems(503))
    async def list_sagas(
        request: Request,
        status: SagaStatus | None = None,
        definition: http.Identifier | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> SagaList:
        """Newest sagas first, and a count per status."""
        async with _runtime(request).pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT saga_id, definition, status, step, reason, updated_at FROM sagas"
                " WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR definition = $2)"
                " ORDER BY updated_at DESC LIMIT $3",
                status.value if status else None,
                definition,
                limit,
            )
            counts = await conn.fetch("SELECT status, count(*) AS n FROM sagas GROUP BY status")
        return SagaList(
            sagas=[SagaSummary(**dict(r)) for r in rows],
            counts={r["status"]: r["n"] for r in counts},
        )

    return r


def _first_error(exc: ValidationError) -> str:
    e = exc.errors()[0]
    where = ".".join(str(p) for p in e["loc"])
    return f"{where}: {e['msg']}" if where else str(e["msg"])
