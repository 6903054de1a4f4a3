"""Hosting a :class:`~sagakit.runtime.service.Service`: an HTTP app whose lifespan creates
and migrates the service's database, creates its topics, checks its handlers against its
sagas, and runs the outbox relay, the consumer and the background loops, supervised.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from sagakit import http, metrics, orchestration, tracing
from sagakit.config import Settings, database_url
from sagakit.db import MigrationSet, connect_pool, migrate
from sagakit.db.pool import Connection, redact
from sagakit.devstack.provision import ensure_databases
from sagakit.errors import ConfigError, SagakitError, TransientError
from sagakit.messaging import (
    ConsumerOptions,
    ConsumerRuntime,
    OutboxRelay,
    inbox,
    logcontext,
)
from sagakit.messaging.retry import is_outage
from sagakit.messaging.transport.kafka import KafkaOptions, KafkaTransport, ensure_topics
from sagakit.messaging.transport.port import Producer
from sagakit.runtime.pruning import prune_periodically
from sagakit.runtime.service import Mode, Service
from sagakit.saga import SagaDefinition
from sagakit.supervisor import Supervisor

log = logging.getLogger(__name__)

MESSAGING = MigrationSet.from_package("messaging", "sagakit.messaging")
SAGAS = MigrationSet.from_package("orchestrator", "sagakit.orchestration")


def mode_from_env() -> Mode:
    raw = os.environ.get("SAGAKIT_MODE", Mode.ORCHESTRATION)
    try:
        return Mode(raw)
    except ValueError:
        raise ConfigError(f"SAGAKIT_MODE={raw!r}: use orchestration or choreography") from None


@dataclass
class Runtime:
    """What a running service holds; HTTP routes reach it with ``Runtime.of(request)``."""

    service: Service
    settings: Settings
    mode: Mode
    pool: asyncpg.Pool
    producer: Producer
    consumer: ConsumerRuntime
    relay: OutboxRelay
    supervisor: Supervisor
    extra: dict[str, Any] = field(default_factory=dict)
    fatal: str | None = None
    """Set when a background task was given up on: the process is going down."""

    @staticmethod
    def of(request: Request) -> Runtime:
        """The runtime of the service serving ``request``."""
        rt: Runtime = request.app.state.runtime
        return rt

    async def start_saga(
        self,
        tx: Connection,
        definition: SagaDefinition,
        data: Any,
        *,
        saga_id: str | None = None,
        key: str | None = None,
    ) -> str:
        """Start a saga if and only if ``tx`` commits; see :func:`sagakit.start_saga`. A saga
        this service orchestrates begins in ``tx`` itself, without a start message."""
        from sagakit.runtime.start import start_saga

        hosted = self.mode is Mode.ORCHESTRATION and definition.name in self.orchestrator.latest
        return await start_saga(
            tx,
            definition,
            data,
            saga_id=saga_id,
            key=key,
            namespace=self.settings.namespace,
            choreography=self.mode is Mode.CHOREOGRAPHY,  # the start goes to the saga's topic
            keep_copy=self.service.choreographs(self.mode)
            and (definition.name, definition.version)
            in {(d.name, d.version) for d in self.service.followed},
            orchestrator=self.orchestrator if hosted else None,
        )

    @functools.cached_property
    def orchestrator(self) -> orchestration.Orchestrator:
        """The orchestrator of the sagas this service orchestrates."""
        return self.service.orchestrator(self.settings.namespace)

    def healthy(self) -> bool:
        """Up, polling, and publishing: a relay that has not emptied the outbox for a
        minute (broker refusing everything) makes the service unhealthy too."""
        now = time.monotonic()
        return (
            self.fatal is None
            and now - self.consumer.last_poll < 10
            and now - self.relay.last_ok < 60
        )


GAUGES = {
    "sagakit_outbox_backlog": "SELECT count(*) FROM sagakit_outbox",
    "sagakit_outbox_oldest_seconds": (
        "SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0) FROM sagakit_outbox"
    ),
    "sagakit_outbox_parked": "SELECT count(*) FROM sagakit_outbox_parked",
}
"""Read at each scrape for every service."""


def create_app(
    spec: Service,
    settings: Settings | None = None,
    *,
    on_fatal: Callable[[], None] = lambda: None,
) -> FastAPI:
    """The service as an ASGI app. ``on_fatal`` is called when a background task is given
    up on (``serve`` stops the server then, and exits non-zero)."""
    settings = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            rt = await _start(app)
        except Exception as exc:
            app.state.startup_error = exc  # serve() reports it in one line
            raise
        metrics.RUNTIMES.add(rt)
        try:
            yield
        finally:
            metrics.RUNTIMES.remove(rt)
            rt.supervisor.stop.set()
            await rt.supervisor.wait()
            await rt.producer.stop()
            await rt.pool.close()

    async def _start(app: FastAPI) -> Runtime:
        if not settings.database_url or not settings.kafka_bootstrap:
            raise ConfigError("SAGAKIT_DATABASE_URL and SAGAKIT_KAFKA_BOOTSTRAP must be set")
        mode = mode_from_env()
        metrics.serving(spec.name, {d.name for d in spec.orchestrates})
        spec.check(mode)
        name = settings.database(spec.database)
        await _ensure_database(settings.database_url, name)
        url = database_url(settings.database_url, name)
        pool = await connect_pool(url, min_size=2, max_size=10)
        sets = [
            MESSAGING,
            *([SAGAS] if spec.keeps_sagas(mode) else []),
            *filter(None, [spec.migrations]),
        ]
        await _prepare(pool, sets, spec, mode)
        await ensure_topics(
            settings.kafka_bootstrap,
            spec.topics(mode, settings.namespace),
            settings.partitions,
            replication_factor=settings.replication_factor,
            wait=60.0,  # the broker may be starting with us
        )
        transport = KafkaTransport(
            KafkaOptions(
                bootstrap=settings.kafka_bootstrap,
                fetch_max_wait_ms=settings.fetch_max_wait_ms,
                fetch_idle_wait_ms=settings.fetch_idle_wait_ms,
                session_timeout_ms=settings.session_timeout_ms,
                heartbeat_interval_ms=settings.heartbeat_interval_ms,
                client_id=spec.name,
            )
        )
        producer = await _start_producer(transport, wait=60.0)
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
        stop = asyncio.Event()

        def give_up(name: str, exc: BaseException) -> None:
            rt.fatal = f"{name}: {exc!r}"
            on_fatal()

        supervisor = Supervisor(stop, give_up)
        rt = Runtime(spec, settings, mode, pool, producer, consumer, relay, supervisor)
        app.state.runtime = rt
        supervisor.start("relay", relay.run)
        supervisor.start("consumer", consumer.run)
        supervisor.start("inbox-pruning", functools.partial(prune_inbox, rt))
        for loop in [*spec.background, *orchestration.loops(spec, mode)]:
            supervisor.start(loop.__name__, functools.partial(loop, rt))
        log.info("%s up (%s mode, database %s)", spec.name, mode, redact(url))
        return rt

    app = FastAPI(title=f"sagakit {spec.name} service", lifespan=lifespan)
    app.include_router(spec.routes)
    if spec.orchestrates:
        app.include_router(orchestration.routes(spec.orchestrates))
    http.install(app)  # body limit, 503 for outages and interrupted commits

    @app.get(
        "/health",
        responses={
            503: {
                "description": "not ready: the database, the broker or a task is down",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    )
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
            "fatal": rt.fatal,
            "listening": rt.relay.listening,
            "relay_last_ok_s": round(time.monotonic() - rt.relay.last_ok, 1),
            "handled": stats.handled,
            "duplicates": stats.duplicates,
            "dead_lettered": stats.dead_lettered,
            "published": rt.relay.stats.published,
            "outbox_parked": rt.relay.stats.parked,
            "restarts": sum(rt.supervisor.restarts.values()),
            **{k: v for k, v in rt.extra.items() if isinstance(v, int)},
        }
        return JSONResponse(body, status_code=200 if db and broker else 503)

    @app.get("/metrics", response_class=PlainTextResponse, responses=http.problems(503))
    async def metrics_(request: Request) -> Response:
        """Prometheus text format (see ``sagakit.metrics``)."""
        rt: Runtime = request.app.state.runtime
        gauges = {**GAUGES, **(orchestration.GAUGES if spec.orchestrates else {}), **spec.gauges}
        read: dict[str, float] = {}
        async with rt.pool.acquire(timeout=2) as conn:
            for name, sql in gauges.items():
                read[name] = float(await conn.fetchval(sql) or 0)
        for k, v in rt.extra.items():  # counts a service's own loops keep
            if isinstance(v, int):
                read[k if k.startswith("sagakit_") else f"sagakit_{k}"] = v
        member = rt.consumer.consumer
        lag = await member.lag() if member is not None else {}
        body = metrics.exposition(rt, read, lag)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return app


async def prune_inbox(rt: Runtime, stop: asyncio.Event) -> None:
    """Forget handled message ids older than the inbox retention."""
    keep = timedelta(hours=rt.settings.inbox_retention_hours)
    await prune_periodically(rt.pool, stop, inbox.prune, keep, what="inbox")


async def _prepare(
    pool: asyncpg.Pool, sets: list[MigrationSet], spec: Service, mode: Mode, *, wait: float = 60
) -> None:
    """Migrate the service's database and record its mode. A database that goes away
    meanwhile (a restart) is waited for, within ``wait`` seconds: the migrations run in one
    transaction, so a retry starts over cleanly."""
    deadline = time.monotonic() + wait
    delay = 0.2
    while True:
        try:
            async with pool.acquire() as conn:
                await migrate(conn, *sets)
                if spec.keeps_sagas(mode):
                    await orchestration.store.record_mode(conn, mode.value)
            return
        except Exception as exc:
            if not is_outage(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning("database lost during start-up (%r); again in %.1f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def _start_producer(transport: KafkaTransport, *, wait: float) -> Producer:
    """A started producer; a broker that is not up yet is waited for, up to ``wait``
    seconds (services and broker often start together)."""
    deadline = time.monotonic() + wait
    delay = 0.2
    while True:
        producer = transport.producer()
        try:
            await producer.start()
            return producer
        except TransientError as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("broker not reachable yet (%s); retrying in %.1f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def _ensure_database(server_url: str, name: str) -> None:
    """Create the service's database if it is missing and this role may; a server that
    refuses (or is not up yet) is left to the connection that follows to report."""
    try:
        await ensure_databases(server_url, [name])
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        log.info("database %s not created here (%s); connecting to it", name, redact(str(exc)))


def runtime_of(request: Request) -> Runtime:
    return Runtime.of(request)


def serve(spec: Service) -> None:
    """Run a service until SIGTERM: ``sagakit run MODULE:NAME``; port from SAGAKIT_PORT,
    address from SAGAKIT_HOST (127.0.0.1). Exits non-zero when a background task had to be
    given up on."""
    import uvicorn

    logcontext.configure(os.environ.get("SAGAKIT_LOG_LEVEL", "INFO"), prefix=f"{spec.name} ")
    port = int(os.environ.get("SAGAKIT_PORT", "0") or 0)
    if not port:
        raise ConfigError("SAGAKIT_PORT must be set")
    os.environ.setdefault("OTEL_SERVICE_NAME", spec.name)
    tracing.configure()
    server: uvicorn.Server | None = None

    def stop_serving() -> None:
        if server is not None:
            server.should_exit = True

    app = create_app(spec, on_fatal=stop_serving)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=os.environ.get("SAGAKIT_HOST", "127.0.0.1"),
            port=port,
            log_level="warning",
            access_log=False,
        )
    )
    if not os.environ.get("SAGAKIT_DEBUG"):  # the one line below says it; no traceback
        logging.getLogger("uvicorn.error").addFilter(_NoStartupTraceback())
    try:
        server.run()
    except SystemExit:  # uvicorn's exit after a failed start-up
        if getattr(app.state, "startup_error", None) is None:
            raise
    finally:
        tracing.flush()
    failed: BaseException | None = getattr(app.state, "startup_error", None)
    if failed is not None:
        log.critical("%s did not start: %s", spec.name, redact(_one_line(failed)))
        sys.exit(1)
    rt: Runtime | None = getattr(app.state, "runtime", None)
    if rt is not None and rt.fatal is not None:
        log.critical("%s stopped: %s", spec.name, rt.fatal)
        sys.exit(70)
    if not server.started:
        sys.exit(1)


class _NoStartupTraceback(logging.Filter):
    """Drops uvicorn's report of a failed lifespan start-up (a traceback, then "Application
    startup failed"): ``serve`` says what failed in one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not (text.startswith("Traceback") or text.startswith("Application startup failed"))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, SagakitError) else f"{type(exc).__name__}: {text}"
