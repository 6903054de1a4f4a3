"""Bring up the stack and the services for a demo or a benchmark run, in a namespace of
their own with fresh databases, and take them down afterwards."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace

import asyncpg

from examples.shop import SERVICE_DATABASES
from examples.shop.saga import Flow
from examples.shop.system import DEFAULT_PORTS, SERVICES
from sagakit import Mode, Settings
from sagakit.dev import DevStack, Fleet, StackInfo


async def recreate_databases(server_url: str, names: tuple[str, ...]) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def running_shop(
    namespace: str,
    mode: Mode,
    flow: Flow = Flow.RESERVE_FIRST,
    *,
    env: Mapping[str, str] | None = None,
    ports: Mapping[str, int] | None = None,
    console_port: int | None = None,
    services: Mapping[str, str] = SERVICES,
) -> AsyncIterator[tuple[StackInfo, Fleet]]:
    base = Settings.from_env()
    settings = replace(base, namespace=namespace)
    stack = DevStack(base)
    was_running = await asyncio.to_thread(stack.status) is not None
    info = await asyncio.to_thread(stack.up)
    fleet = Fleet(
        info,
        settings,
        services,
        dict(ports or DEFAULT_PORTS),
        mode=mode,
        log_dir=base.home / "logs" / namespace,
        env={"SHOP_FLOW": flow.value, **(env or {})},
        console_port=console_port,
    )
    try:
        names = tuple(settings.database(d) for d in SERVICE_DATABASES.values())
        await recreate_databases(info.database_url, names)
        await fleet.start()
        yield info, fleet
    finally:
        fleet.stop()
        if not was_running:
            await asyncio.to_thread(stack.down)
