"""The web console: watch sagas happen and act on them (``sagakit console MODULE:NAME...``).

It reads each saga from the database of the service that keeps it (the orchestrator; in
choreography, the tracker), the dead letters from the broker, and acts through the same
operator actions as ``sagakit sagas`` (:mod:`sagakit.operator`). Server-rendered pages, a
little JavaScript for live updates (server-sent events), no front-end build and nothing
fetched from the internet.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

import asyncpg

from sagakit.config import Settings, database_url
from sagakit.db import connect_pool
from sagakit.errors import ConfigError
from sagakit.runtime.service import Service

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def _pools(
    settings: Settings, server: str, services: Sequence[Service], *, wait: float
) -> AsyncIterator[dict[str, asyncpg.Pool]]:
    """A small pool on each service's database (waiting up to ``wait`` seconds for a
    server that is not up yet)."""
    pools: dict[str, asyncpg.Pool] = {}
    try:
        for svc in services:
            url = database_url(server, settings.database(svc.database))
            try:
                pools[svc.name] = await connect_pool(url, min_size=1, max_size=4, wait=wait)
            except ConfigError as exc:  # (a missing database among them)
                raise ConfigError(f"{svc.name}: {exc} (a service creates its own)") from exc
        yield pools
    finally:
        for pool in pools.values():
            await pool.close()


async def run(
    services: Sequence[Service],
    *,
    host: str,
    port: int,
    settings: Settings,
    server: str,
    bootstrap: str,
) -> None:
    """Serve the console for ``services`` until cancelled (or SIGINT/SIGTERM)."""
    import uvicorn

    from sagakit.console.app import create_app
    from sagakit.console.auth import Credentials
    from sagakit.console.source import Keeper, Letters
    from sagakit.messaging.transport.kafka import KafkaOptions, KafkaTransport

    credentials = Credentials.from_env()
    credentials.check_host(host)
    keeping = [s for s in services if s.orchestrates]
    if not keeping:
        raise ConfigError("none of these services keeps sagas: name the one orchestrating them")
    transport = KafkaTransport(
        KafkaOptions(
            bootstrap=bootstrap,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            client_id="sagakit-console",
        )
    )
    async with _pools(settings, server, services, wait=30) as pools:
        keepers = [Keeper(s, pools[s.name]) for s in keeping]
        groups = {settings.group(s.name): pools[s.name] for s in services}
        letters = Letters(transport, settings.namespace, groups)
        app = create_app(keepers, letters, credentials, host=host)
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,  # open event streams end with the process
        )
        log.info("console on http://%s:%d", host, port)
        await uvicorn.Server(config).serve()
