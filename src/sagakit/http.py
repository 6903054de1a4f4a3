"""The HTTP edge every service shares: what a request may carry, how big it may be, and how
each refusal or failure is answered and documented.

Text is stored in PostgreSQL, which cannot hold NUL, and is encoded as UTF-8, which cannot
hold a lone surrogate: both, and every other control character, are refused with a 422
before a handler runs, instead of failing in the database with a 500. Numbers are strict
(``true`` and ``"5"`` are not integers). Bodies are bounded (413). Every error a service
raises itself has one shape, :class:`Problem`, and :func:`problems` documents it per route,
so a client (or a fuzzer) can rely on the OpenAPI document for every status code.

A write whose COMMIT was interrupted by a lost connection may or may not have happened: that
is not "nothing was changed". :func:`transaction` tells the two apart, and the answer to the
second is a 503 that says so and asks for a retry that is safe to repeat.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StringConstraints,
    WithJsonSchema,
)
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sagakit.db import Connection
from sagakit.errors import SagakitError
from sagakit.messaging.retry import Disposition, classify, is_outage

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 64 * 1024
"""Largest request body accepted: the services' bodies are a few hundred bytes."""

RETRY_AFTER_S = 1
"""What a 503 asks a client to wait before retrying, in seconds."""

_REFUSED = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
"""Control characters (Unicode category Cc) and surrogates (Cs)."""

PRINTABLE = r"[^\u0000-\u001F\u007F-\u009F]"
"""One character that is no control character, as a JSON Schema (ECMA 262) and Python
regex: the documented form of the rule above. Surrogates are left out: no UTF-8 request can
carry one, and regex engines that check schemas reject them in a character class."""


def is_printable(value: str) -> bool:
    """Whether ``value`` holds no control character nor surrogate."""
    return _REFUSED.search(value) is None


def printable(value: str) -> str:
    """``value``, if it holds no control character nor surrogate (a pydantic validator)."""
    found = _REFUSED.search(value)
    if found:
        raise ValueError(
            f"control character U+{ord(found.group()):04X} at position {found.start()}"
        )
    return value


def _text_schema(min_length: int, max_length: int) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "type": "string",
            "minLength": min_length,
            "maxLength": max_length,
            "pattern": f"^{PRINTABLE}{{{min_length},{max_length}}}$",
        }
    )


Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200),
    AfterValidator(printable),
    _text_schema(1, 200),
]
"""A name a client chooses for a resource (path ids, ids in bodies): 1 to 200 characters,
no control characters."""

SafeText = Annotated[
    str,
    StringConstraints(max_length=1000),
    AfterValidator(printable),
    _text_schema(0, 1000),
]
"""Free text up to 1000 characters, no control characters."""


def _whole(value: object) -> object:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Integer = Annotated[int, BeforeValidator(_whole)]
"""A JSON integer, ``5`` or ``5.0`` (JSON Schema counts both); in a :class:`StrictBody`
never ``true``, ``"5"`` nor ``5.5``."""

IdempotencyKey = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, pattern=r"^[!-~]+$"),
]
"""A client's key for a retried write: 1 to 200 visible ASCII characters. An empty key
would be one key shared by every client that sends it."""


class StrictBody(BaseModel):
    """Base of request bodies: unknown fields are refused and nothing is coerced (an integer
    field takes a JSON integer, not ``true`` nor ``"5"``)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Problem(BaseModel):
    """The body of every error a service answers itself (404, 409, 413, 503, ...); 422s keep
    FastAPI's validation shape, a list of errors under ``detail``."""

    detail: str


_MEANINGS: dict[int, str] = {
    400: "The body could not be read (e.g. it is not UTF-8).",
    404: "No such resource.",
    409: "The request conflicts with what the service already holds.",
    413: "The request body is larger than the service accepts.",
    503: "The database is unavailable (nothing was changed), or the connection was lost while"
    " committing (the outcome is unknown; the detail says how to retry safely). Retry after"
    " Retry-After seconds.",
}


def problems(
    *codes: int, body: bool = False, descriptions: Mapping[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route for the error codes it can answer, each with the
    :class:`Problem` schema; ``body=True`` adds what reading a body can answer (400, 413)."""
    wanted = sorted({*codes, *((400, 413) if body else ())})
    described = {**_MEANINGS, **(descriptions or {})}
    out: dict[int | str, dict[str, Any]] = {}
    for code in wanted:
        entry: dict[str, Any] = {"model": Problem, "description": described.get(code, "Error.")}
        if code == 503:
            entry["headers"] = {
                "Retry-After": {
                    "description": "seconds to wait before retrying",
                    "schema": {"type": "integer", "minimum": 0},
                }
            }
        out[code] = entry
    return out


def links(status: int, **named: Mapping[str, Any]) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entry naming what a client can do next with a ``status`` answer
    (OpenAPI links: stateful clients and fuzzers follow them)."""
    return {status: {"links": dict(named)}}


def link(operation_id: str, description: str, **parameters: str) -> dict[str, Any]:
    """One OpenAPI link: call ``operation_id`` with ``parameters`` taken from this exchange
    (runtime expressions such as ``$response.body#/id`` or ``$request.path.id``)."""
    return {"operationId": operation_id, "parameters": parameters, "description": description}


def invalid(where: str, name: str, message: str, value: object) -> RequestValidationError:
    """A 422 raised by hand with the same body as FastAPI's own, so that one documented
    schema holds for both (``where``: ``query``, ``path``, ``header`` or ``body``)."""
    return RequestValidationError(
        [{"type": "value_error", "loc": (where, name), "msg": message, "input": value}]
    )


class OutcomeUnknown(Exception):
    """The connection was lost while COMMIT was in flight: the write may have happened."""

    def __init__(self, retry: str) -> None:
        super().__init__(f"outcome unknown, {retry}")


@contextlib.asynccontextmanager
async def transaction(
    conn: Connection, *, retry: str = "retry the same request"
) -> AsyncIterator[None]:
    """A transaction that tells an interrupted COMMIT apart from any earlier failure.

    An error while statements run rolls back and propagates unchanged (an outage becomes a
    503 "nothing was changed"). An error from COMMIT itself that the server did not answer
    (lost connection, timeout) raises :class:`OutcomeUnknown`, answered with a 503 that
    says the write may have happened and how to ``retry`` safely."""
    tx = conn.transaction()
    await tx.start()
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):  # a dead connection cannot roll back; the pool
            await tx.rollback()  # discards it, and the first error is the one that matters
        raise
    try:
        await tx.commit()
    except Exception as exc:
        if isinstance(exc, asyncpg.PostgresError) and not is_outage(exc):
            raise  # the server refused the COMMIT: it rolled back, the outcome is known
        raise OutcomeUnknown(retry) from exc


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a body passes the limit. An ``HTTPException``, so that
    a framework reading the body lets it through to its handler (413, :class:`Problem`)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


class BodyLimit:
    """ASGI middleware refusing request bodies over ``max_bytes`` with a 413: at once when
    Content-Length says so, else as the bytes arrive (chunked bodies, or a Content-Length
    that understates), before the application has all of them."""

    def __init__(self, app: ASGIApp, *, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _problem(BodyTooLarge(self.max_bytes))(scope, receive, send)
            return
        received = 0
        started = False

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, watched)
        except BodyTooLarge as exc:
            if started:
                raise
            await _problem(exc)(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    raw = Headers(scope=scope).get("content-length")
    try:
        return None if raw is None else int(raw)
    except ValueError:
        return None


def _problem(exc: HTTPException) -> JSONResponse:
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)


class _AsciiJSON(JSONResponse):
    """JSON escaped to ASCII: a 422 echoes the refused input, which may hold a lone
    surrogate that UTF-8 cannot encode."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode("ascii")


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _AsciiJSON({"detail": jsonable_encoder(exc.errors())}, status_code=422)


async def _refusal(request: Request, exc: Exception) -> Response:
    """FastAPI's answer to an HTTP error, but a 405 lists every method the path has: the
    router names only those of the first route whose path matched."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        routes = request.app.router.routes
        allowed = [
            method
            for method in _METHODS
            if any(r.matches({**request.scope, "method": method})[0] is Match.FULL for r in routes)
        ]
        exc = HTTPException(405, exc.detail, headers={"Allow": ", ".join(allowed)})
    return await http_exception_handler(request, exc)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    """An outage, or a database error that passes on its own (a deadlock, a serialization
    failure, a race with another writer, a command timeout): 503, nothing was changed. True
    of reads, and of writes made through :func:`transaction` (one that failed before its
    COMMIT was rolled back; a failed COMMIT is :class:`OutcomeUnknown` instead). Any other
    error is a bug, and stays a 500."""
    disposition = classify(exc)
    transient = isinstance(exc, asyncpg.PostgresError | TimeoutError)
    if not (disposition is Disposition.OUTAGE or (transient and disposition is Disposition.RETRY)):
        raise exc
    log.warning("%s %s: database unavailable: %r", request.method, request.url.path, exc)
    return JSONResponse(
        {"detail": "database unavailable, nothing was changed; retry later"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def _unknown(request: Request, exc: Exception) -> JSONResponse:
    log.warning("%s %s: %s (%r)", request.method, request.url.path, exc, exc.__cause__)
    return JSONResponse(
        {"detail": f"database unavailable while committing: {exc}"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def install(app: FastAPI, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
    """Put the edge in front of ``app``: the body limit, the 503 answers to outages and to
    interrupted commits, and 422s that can echo any input."""
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(HTTPException, _refusal)
    app.add_exception_handler(OutcomeUnknown, _unknown)
    # Handlers go by class; is_outage decides within each which errors are outages.
    for family in (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, SagakitError):
        app.add_exception_handler(family, _unavailable)


async def row_or_404(request: Request, table: str, key: str, value: str) -> asyncpg.Record:
    """The row of ``table`` whose ``key`` column is ``value`` in the serving service's
    database, or a 404 naming it (``table`` and ``key`` are yours, never a client's)."""
    async with request.app.state.runtime.pool.acquire() as conn:
        row: asyncpg.Record | None = await conn.fetchrow(
            f"SELECT * FROM {table} WHERE {key} = $1", value
        )
    if row is None:
        raise HTTPException(404, f"no {key.removesuffix('_id')} {value}")
    return row
