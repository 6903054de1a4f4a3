"""What every service process has in common: an HTTP app whose lifespan connects the
database, applies migrations, and runs the outbox relay and the consumer runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

import asyncpg
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from sagakit.aio import sleep_or_stop
from sagakit.config import Settings, database_url
from sagakit.db import MigrationSet, connect_pool, migrate
from sagakit.errors import ConfigError
from sagakit.messaging import (
    ConsumerOptions,
    ConsumerRuntime,
    OutboxRelay,
    Router,
    inbox,
    logcontext,
)
from sagakit.messaging.retry import OUTAGES
from sagakit.messaging.transport.kafka import KafkaOptions, KafkaTransport
from sagakit.messaging.transport.port import Producer

log = logging.getLogger(__name__)

MESSAGING = MigrationSet.from_package("messaging", "sagakit.messaging")


class Mode(StrEnum):
    ORCHESTRATION = "orchestration"
    CHOREOGRAPHY = "choreography"


def mode_from_env() -> Mode:
    raw = os.environ.get("SAGAKIT_MODE", Mode.ORCHESTRATION)
    try:
        return Mode(raw)
    except ValueError:
        raise ConfigError(f"SAGAKIT_MODE={raw!r}: use orchestration or choreography") from None


@dataclass
class Runtime:
    """What a running service holds; handlers and routes reach it through ``app.state``."""

    settings: Settings
    mode: Mode
    pool: asyncpg.Pool
    producer: Producer
    consumer: ConsumerRuntime
    relay: OutboxRelay
    extra: dict[str, Any] = field(default_factory=dict)

    def healthy(self) -> bool:
        return time.monotonic() - self.consumer.last_poll < 10


Background = Callable[[Runtime, asyncio.Event], Coroutine[Any, Any, None]]


@dataclass
class ServiceSpec:
    name: str
    """Service name; also its consumer group."""
    database: str
    """Name of its database (before namespacing)."""
    migrations: MigrationSet
    routes: APIRouter
    router: Callable[[Mode, str], Router]
    """Message handlers for a mode and namespace."""
    background: Sequence[Background] = ()
    """Extra loops (the orchestrator's timers), run until shutdown."""


def create_app(spec: ServiceSpec, settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not settings.database_url or not settings.kafka_bootstrap:
            raise ConfigError("SAGAKIT_DATABASE_URL and SAGAKIT_KAFKA_BOOTSTRAP must be set")
        mode = mode_from_env()
        url = database_url(settings.database_url, settings.database(spec.database))
        pool = await connect_pool(url, min_size=2, max_size=10)
        async with pool.acquire() as conn:
            await migrate(conn, MESSAGING, spec.migrations)
        transport = KafkaTransport(
            KafkaOptions(
                bootstrap=settings.kafka_bootstrap,
                fetch_max_wait_ms=settings.fetch_max_wait_ms,
                session_timeout_ms=settings.session_timeout_ms,
                heartbeat_interval_ms=settings.heartbeat_interval_ms,
                client_id=spec.name,
            )
        )
        producer = transport.producer()
        await producer.start()
        router = spec.router(mode, settings.namespace)
        relay = OutboxRelay(pool, producer, listen_url=url)
        consumer = ConsumerRuntime(
            group=settings.group(spec.name),
            router=router,
            transport=transport,
            pool=pool,
            options=ConsumerOptions(),
            on_commit=relay.wake,
        )
        rt = Runtime(settings, mode, pool, producer, consumer, relay)
        app.state.runtime = rt
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(relay.run(stop), name="relay"),
            asyncio.create_task(consumer.run(stop), name="consumer"),
            asyncio.create_task(prune_inbox(rt, stop), name="inbox-pruning"),
            *(asyncio.create_task(loop(rt, stop), name="background") for loop in spec.background),
        ]
        log.info("%s up (%s mode, database %s)", spec.name, mode, url)
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await producer.stop()
            await pool.close()

    app = FastAPI(title=f"sagakit {spec.name} service", lifespan=lifespan)
    app.include_router(spec.routes)

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        """The database is unreachable: say so (503, retry later), nothing was changed."""
        log.warning("%s %s: database unavailable: %r", request.method, request.url.path, exc)
        return JSONResponse(
            {"detail": "database unavailable, nothing was changed; retry later"},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    for outage in OUTAGES:  # the same list the consumers wait out
        app.add_exception_handler(outage, unavailable)

    @app.get("/health")
    async def health(request: Request) -> JSONResponse:
        rt: Runtime = request.app.state.runtime
        try:
            async with rt.pool.acquire(timeout=2) as conn:
                await conn.fetchval("SELECT 1")
            db = True
        except (OSError, asyncpg.PostgresError, TimeoutError):
            db = False
        broker = rt.healthy()
        stats = rt.consumer.stats
        body = {
            "service": spec.name,
            "mode": rt.mode,
            "database": db,
            "broker": broker,
            "handled": stats.handled,
            "duplicates": stats.duplicates,
            "dead_lettered": stats.dead_lettered,
            "published": rt.relay.published,
            **{k: v for k, v in rt.extra.items() if isinstance(v, int)},
        }
        return JSONResponse(body, status_code=200 if db and broker else 503)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics(request: Request) -> str:
        """Prometheus text format."""
        rt: Runtime = request.app.state.runtime
        s = rt.consumer.stats
        values = {
            "sagakit_messages_handled_total": s.handled,
            "sagakit_messages_duplicate_total": s.duplicates,
            "sagakit_messages_retried_total": s.retries,
            "sagakit_messages_dead_lettered_total": s.dead_lettered,
            "sagakit_outbox_published_total": rt.relay.published,
        }
        if "stuck_orders" in rt.extra:
            values["sagakit_stuck_orders"] = rt.extra["stuck_orders"]
        label = f'{{service="{spec.name}"}}'
        return "".join(f"{k}{label} {v}\n" for k, v in values.items())

    return app


async def prune_inbox(rt: Runtime, stop: asyncio.Event, *, every: float = 600.0) -> None:
    """Forget handled message ids older than the retention, every ``every`` seconds."""
    keep = timedelta(hours=rt.settings.inbox_retention_hours)
    while not stop.is_set():
        try:
            async with rt.pool.acquire() as conn:
                removed = await inbox.prune(conn, keep)
            if removed:
                log.info("inbox: forgot %d message ids older than %s", removed, keep)
        except Exception:
            log.exception("inbox pruning failed; will try again")
        await sleep_or_stop(stop, every)


def runtime_of(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def row_or_404(request: Request, table: str, key: str, value: str) -> asyncpg.Record:
    """The row of ``table`` whose ``key`` column is ``value``, or a 404 naming it."""
    async with runtime_of(request).pool.acquire() as conn:
        row = await conn.fetchrow(f"SELECT * FROM {table} WHERE {key} = $1", value)
    if row is None:
        raise HTTPException(404, f"no {key.removesuffix('_id')} {value}")
    return row


def serve(spec: ServiceSpec) -> None:
    """Run a service: ``python -m sagakit.services.<name>``; port from SAGAKIT_PORT."""
    import uvicorn

    logcontext.configure(os.environ.get("SAGAKIT_LOG_LEVEL", "INFO"), prefix=f"{spec.name} ")
    port = int(os.environ.get("SAGAKIT_PORT", "0") or 0)
    if not port:
        raise ConfigError("SAGAKIT_PORT must be set")
    uvicorn.run(
        create_app(spec),
        host=os.environ.get("SAGAKIT_HOST", "127.0.0.1"),
        port=port,
        log_level="warning",
        access_log=False,
    )
