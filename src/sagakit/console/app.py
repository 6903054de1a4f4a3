"""The console as an ASGI app: the saga list, a saga's page (diagram, waterfall, messages,
actions), the dead letters, and a stream of server-sent events that tells open pages to
refresh when a saga changes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import asyncpg
from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import StreamingResponse

from sagakit import operator
from sagakit.console.auth import Credentials
from sagakit.console.drawing import draw
from sagakit.console.source import FILTERS, Keeper, Letters, pretty
from sagakit.console.story import tell, trace_id
from sagakit.db import transaction
from sagakit.errors import SagakitError, TransientError
from sagakit.http import is_printable
from sagakit.saga import SagaStatus

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
"""How often the console looks for changed sagas (one cheap query per saga keeper)."""
MAX_NOTE = 2000


class Feed:
    """Counts changes of any saga; server-sent event streams wait on it."""

    def __init__(self, keepers: Sequence[Keeper]) -> None:
        self.keepers = keepers
        self.version = 0
        self._changed = asyncio.Condition()
        self._last: dict[str, int] = {}

    async def watch(self) -> None:
        while True:
            for k in self.keepers:
                try:
                    last = await k.last_change()
                except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                    log.warning("console: %s's database: %r", k.name, exc)
                    continue
                if self._last.get(k.name) != last:
                    self._last[k.name] = last
                    async with self._changed:
                        self.version += 1
                        self._changed.notify_all()
            await asyncio.sleep(POLL_SECONDS)

    async def after(self, seen: int, timeout: float) -> int:
        """The version once it is past ``seen`` (or ``seen`` after ``timeout`` seconds)."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.version != seen), timeout
                )
            return self.version


def create_app(
    keepers: Sequence[Keeper],
    letters: Letters,
    credentials: Credentials,
    *,
    host: str = "127.0.0.1",
    title: str = "sagakit console",
) -> FastAPI:
    env = Environment(
        loader=PackageLoader("sagakit.console", "templates"),
        autoescape=select_autoescape(["html"]),
    )
    env.filters["pretty"] = pretty
    env.filters["ago"] = _ago
    env.filters["seg"] = lambda text: quote(str(text), safe="")  # one path segment
    env.filters["when"] = lambda epoch: datetime.fromtimestamp(epoch, UTC).strftime(
        "%Y-%m-%d %H:%M:%S UTC"
    )
    feed = Feed(keepers)
    by_name = {k.name: k for k in keepers}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        watcher = asyncio.create_task(feed.watch())
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    app = FastAPI(title=title, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(packages=[("sagakit.console", "static")]), name="static")

    class Auth(BaseHTTPMiddleware):
        async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
            if request.url.path == "/health":
                return await call_next(request)
            who = credentials.who(request.headers.get("authorization"))
            if who is None:
                return Response(
                    "a credential is required",
                    status_code=401,
                    headers={"WWW-Authenticate": 'Basic realm="sagakit console"'},
                )
            request.state.who = who
            return await call_next(request)

    app.add_middleware(Auth)
    if credentials.hosts is not None:
        hosts = [*credentials.hosts, host.strip("[]"), f"[{host.strip('[]')}]"]
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)

    @app.middleware("http")
    async def no_framing(request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
        return response

    @app.exception_handler(OSError)
    @app.exception_handler(TimeoutError)
    @app.exception_handler(asyncpg.PostgresConnectionError)
    @app.exception_handler(asyncpg.InterfaceError)
    @app.exception_handler(asyncpg.CannotConnectNowError)
    @app.exception_handler(TransientError)
    @app.exception_handler(KafkaError)
    async def unavailable(request: Request, exc: Exception) -> Response:
        log.warning("console: %s %s: %r", request.method, request.url.path, exc)
        return PlainTextResponse(
            f"a database or the broker is not reachable ({type(exc).__name__}); try again",
            status_code=503,
        )

    def page(request: Request, template: str, code: int = 200, **values: Any) -> HTMLResponse:
        html = env.get_template(template).render(
            title=title,
            who=request.state.who,
            form_token=credentials.form_token,
            path=request.url.path,
            version=feed.version,
            flash=request.query_params.get("done"),
            refused=request.query_params.get("refused"),
            **values,
        )
        return HTMLResponse(html, status_code=code)

    def problem(request: Request, status: int, reason: str) -> HTMLResponse:
        return page(request, "problem.html", code=status, status_code=status, reason=reason)

    @app.get("/health", include_in_schema=False)
    async def health() -> JSONResponse:
        return JSONResponse({"console": True, "keepers": list(by_name)})

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/sagas", status_code=303)

    @app.get("/sagas", response_class=HTMLResponse)
    async def sagas(request: Request) -> HTMLResponse:
        q = request.query_params
        status = q.get("status") or None
        if status is not None and status not in FILTERS:
            return problem(request, 400, f"status must be one of {', '.join(FILTERS)}")
        definition = q.get("definition") or None
        search = (q.get("q") or "").strip()[:200]
        if not is_printable(definition or "") or not is_printable(search):
            return problem(request, 400, "control characters in the definition or the id")
        rows: list[dict[str, Any]] = []
        counts: dict[str, int] = {}
        names: set[str] = set()
        for k in keepers:
            rows += await k.listing(status=status, definition=definition, search=search, limit=200)
            for key, n in (await k.counts()).items():
                counts[key] = counts.get(key, 0) + n
            names.update(d.name for d in k.definitions.values())
        rows.sort(key=lambda r: r["updated_at"], reverse=True)
        for r in rows:
            d = by_name[r["keeper"]].definition(r["definition"], r["definition_version"])
            r["step_name"] = d.stage_name(r["step"]) if d else f"#{r['step']}"
            r["age"] = r["now"] - r["started_at"]
        return page(
            request,
            "sagas.html",
            rows=rows[:200],
            counts=counts,
            filters=list(FILTERS),
            status=status,
            definition=definition,
            definitions=sorted(names),
            search=search,
            now=datetime.now(UTC),
        )

    @app.get("/sagas/{keeper}/{saga_id:path}", response_class=HTMLResponse)
    async def saga(request: Request, keeper: str, saga_id: str) -> HTMLResponse:
        k = by_name.get(keeper)
        found = await k.saga(saga_id) if k and is_printable(saga_id) else None
        if k is None or found is None:
            return problem(request, 404, f"no saga {saga_id} at {keeper}")
        row, entries = found
        row["data"] = json.loads(row["data"]) if isinstance(row["data"], str) else row["data"]
        d = k.definition(row["definition"], row["definition_version"])
        now = datetime.now(UTC)
        story = tell(d, row, entries, now)
        ended = SagaStatus(row["status"]).terminal
        drawing = draw(d, story.states, None if ended else row["step"]) if d else None
        mode = await k.mode()
        return page(
            request,
            "saga.html",
            keeper=keeper,
            saga=row,
            story=story,
            drawing=drawing,
            trace_id=trace_id(row.get("trace")),
            trace_url=os.environ.get("SAGAKIT_CONSOLE_TRACE_URL", ""),
            actions=_actions(row),
            all_actions=operator.ACTIONS,
            mode=mode.value,
            now=now,
        )

    @app.post("/sagas/{keeper}/{saga_id:path}/actions/{action}", response_model=None)
    async def act(request: Request, keeper: str, saga_id: str, action: str) -> Response:
        form = await _form(request)
        if isinstance(form, tuple):
            return problem(request, *form)
        if not credentials.form_ok(_one(form, "form_token")):
            return problem(request, 403, "this form is not from this console (reload the page)")
        k = by_name.get(keeper)
        if k is None or action not in operator.ACTIONS or not is_printable(saga_id):
            return problem(request, 404, f"no action {action} for saga {saga_id} at {keeper}")
        note, why = _note(_one(form, "note"))
        if why:
            return problem(request, 400, why)
        mode = await k.mode()
        back = f"/sagas/{quote(keeper, safe='')}/{quote(saga_id, safe='')}"
        try:
            async with transaction(k.pool) as conn:
                done = await operator.act(
                    conn,
                    k.service,
                    mode,
                    saga_id,
                    action,
                    by=request.state.who,
                    note=note,
                    namespace=letters.namespace,
                )
        except operator.Refused as exc:
            return RedirectResponse(f"{back}?{urlencode({'refused': str(exc)})}", 303)
        except SagakitError as exc:
            return problem(request, 409, str(exc))
        log.info("%s: %s on saga %s (%s)", request.state.who, action, saga_id, note)
        return RedirectResponse(f"{back}?{urlencode({'done': f'{action}: {done}'})}", 303)

    @app.get("/dead-letters", response_class=HTMLResponse)
    async def dead_letters(request: Request) -> HTMLResponse:
        found = await letters.read()
        return page(request, "letters.html", letters=found, services=sorted(letters.pools))

    @app.post("/dead-letters/replay", response_model=None)
    async def replay(request: Request) -> Response:
        form = await _form(request)
        if isinstance(form, tuple):
            return problem(request, *form)
        if not credentials.form_ok(_one(form, "form_token")):
            return problem(request, 403, "this form is not from this console (reload the page)")
        note, why = _note(_one(form, "note"))
        if why:
            return problem(request, 400, why)
        wanted = []
        for raw in form.get("letter", []):
            partition, _, offset = raw.partition(":")
            if not (_number(partition) and _number(offset)):
                return problem(request, 400, f"a letter is PARTITION:OFFSET, not {raw!r}")
            wanted.append((int(partition), int(offset)))
        if not wanted:
            return problem(request, 400, "pick at least one dead letter to replay")
        done, skipped = await letters.replay(wanted, by=request.state.who, note=note)
        said = f"replayed {len(done)} letter(s)" + (
            f"; not: {'; '.join(skipped)}" if skipped else ""
        )
        key = "done" if done else "refused"
        return RedirectResponse(f"/dead-letters?{urlencode({key: said})}", 303)

    @app.get("/events")
    async def events(request: Request) -> StreamingResponse:
        since = request.query_params.get("since", "")
        start = int(since) if _number(since) else feed.version

        async def stream() -> AsyncIterator[str]:
            seen = start
            yield "retry: 2000\n\n"
            while not await request.is_disconnected():
                # (a change between the page's rendering and this stream is sent at once)
                now = feed.version if feed.version != seen else await feed.after(seen, 15)
                if now == seen:
                    yield ": still here\n\n"
                    continue
                seen = now
                yield f"event: change\ndata: {seen}\n\n"

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return app


def _actions(row: dict[str, Any]) -> list[str]:
    """The operator actions that apply to a saga in this state."""
    status, parked = row["status"], row["parked"] is not None
    if parked:
        return ["resume"]
    if status == "RUNNING":
        return ["retry-step", "cancel"]
    if status == "COMPENSATING":
        return ["retry-step"]
    if status == "COMPENSATION_FAILED":
        return ["retry", "resolve"]
    return []


MAX_FORM = 64 * 1024


async def _form(request: Request) -> dict[str, list[str]] | tuple[int, str]:
    """The posted form, or (status, reason) when the body is not one."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return 400, "the body must be a form (application/x-www-form-urlencoded)"
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return 413, f"the form is larger than {MAX_FORM // 1024} KiB"
    try:
        return parse_qs(body.decode(), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return 400, "the form is not UTF-8 text"


def _note(raw: str | None) -> tuple[str, str]:
    """The note (whitespace folded), and why it cannot be taken (empty if it can)."""
    note = " ".join((raw or "").split())
    if not note:
        return note, "a note is required: say why (it is kept with what you did, and your name)"
    if len(note) > MAX_NOTE:
        return note, f"the note is longer than {MAX_NOTE} characters"
    if not is_printable(note):
        return note, "the note holds control characters"
    return note, ""


def _number(text: str) -> bool:
    """A decimal number ``int`` takes and a partition, offset or version can be."""
    return text.isascii() and text.isdigit() and len(text) <= 18


def _one(form: dict[str, list[str]], key: str) -> str | None:
    values = form.get(key) or []
    return values[-1] if values else None


def _ago(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"
