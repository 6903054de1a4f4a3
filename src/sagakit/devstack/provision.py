"""Create what services expect to exist: one database per service, and the declared topics."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import asyncpg

from sagakit.messaging.transport.kafka import ensure_topics


async def ensure_databases(server_url: str, names: Iterable[str]) -> None:
    conn = await asyncpg.connect(server_url, timeout=10)
    try:
        existing = {r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database")}
        for name in names:
            if name not in existing:
                with contextlib.suppress(asyncpg.DuplicateDatabaseError):  # raced
                    await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


__all__ = ["ensure_databases", "ensure_topics"]
