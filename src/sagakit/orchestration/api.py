"""The HTTP API of a service that orchestrates sagas: start one, list them, read one with
its timeline."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Body, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry.trace import SpanKind
from pydantic import BaseModel, ValidationError, create_model

from sagakit import http, tracing
from sagakit.orchestration import store
from sagakit.saga import SagaDefinition, SagaStatus
from sagakit.saga.definition import newest

if TYPE_CHECKING:
    from sagakit.runtime.host import Runtime


def _runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


class SagaOut(BaseModel):
    saga_id: str
    definition: str
    definition_version: int = 1
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
    members: dict[str, dict[str, Any]] = {}
    """The steps of the stage the saga is at, each with its progress, attempts and timer."""


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
    r = APIRouter(tags=["sagas"])

    for d in newest(definitions).values():  # new sagas start on the newest version
        # A saga whose first step is a local transaction starts in the service whose
        # transaction that is (start_saga there): started here, it would run on nothing.
        if d.stages[0][0].action is not None:
            _start_route(r, d)

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
        saga["members"] = json.loads(saga["members"])
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


def _start_route(r: APIRouter, definition: SagaDefinition) -> None:
    """``POST /sagas/{name}/start``, its body typed by the definition's data model (strictly:
    no ``"5"`` for a number), so that the OpenAPI document says what a valid start is."""
    from sagakit.orchestration import choreographer, orchestrator
    from sagakit.runtime.start import saga_id_for, start_data

    model: Any = dict[str, Any]
    strict: Any = None
    if definition.data is not None:
        model = create_model(f"{definition.data.__name__}Start", __base__=definition.data)
        strict = create_model(f"{definition.data.__name__}Strict", __base__=definition.data)
        strict.model_config["strict"] = True  # the subclass's own copy
        strict.model_rebuild(force=True)

    async def start(request: Request, data: Any, idempotency_key: Any = None) -> Any:
        if strict is not None:
            # FastAPI validates the parsed body as Python objects, where strict mode refuses
            # a date or a UUID written as a JSON string; JSON mode takes those, and no "5".
            try:
                strict.model_validate_json(await request.body())
            except ValidationError as exc:
                errors = exc.errors(include_url=False)
                raise RequestValidationError(
                    [{**e, "loc": ("body", *e["loc"])} for e in errors]
                ) from None
        body = start_data(definition, data)
        key = idempotency_key
        saga_id = saga_id_for(definition, key) if key else str(uuid.uuid4())
        rt = _runtime(request)
        retry = "retry with the same Idempotency-Key" if idempotency_key else "the saga may exist"
        start_span = tracing.span(
            f"start {definition.name}",
            kind=SpanKind.PRODUCER,
            attributes={"sagakit.saga_id": saga_id, "sagakit.definition": definition.name},
        )
        async with rt.pool.acquire() as conn, http.transaction(conn, retry=retry):
            with start_span:  # the saga's trace: every message it causes carries it on
                if rt.service.choreographs(rt.mode):  # the tracker records its copy at once
                    created = await choreographer(rt).begin(
                        conn, definition, saga_id, body, record=True
                    )
                else:
                    created = await orchestrator(rt).begin(conn, definition, saga_id, body)
                if not created and not await store.started_with(conn, saga_id, body):
                    raise HTTPException(409, "this Idempotency-Key started a saga with other data")
        out = SagaStarted(saga_id=saga_id, definition=definition.name, created=created)
        return JSONResponse(out.model_dump(), status_code=202 if created else 200)

    start.__doc__ = (
        f"Start a ``{definition.name}`` saga with the body as its data. The same"
        " ``Idempotency-Key`` names the same saga: a retry answers 200 with its id, and a"
        " start with the same key but other data 409."
    )
    start.__annotations__ = {
        "request": Request,
        "data": Annotated[model, Body(description="the saga's start data")],
        "idempotency_key": Annotated[
            http.IdempotencyKey | None,
            Header(description="makes a retry safe: one saga per key and definition"),
        ],
        "return": Any,
    }
    r.add_api_route(
        f"/sagas/{definition.name}/start",
        start,
        methods=["POST"],
        response_model=SagaStarted,
        status_code=202,
        operation_id=f"start_{definition.name.replace('-', '_')}_saga",
        responses={
            200: {"model": SagaStarted, "description": "Started before with this key."},
            **http.problems(409, 503, body=True),
            **http.links(
                202, saga=http.link("get_saga", "the saga", saga_id="$response.body#/saga_id")
            ),
        },
    )
