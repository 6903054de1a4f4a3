"""asyncpg pools with the settings every service uses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from sagakit.errors import TransientError

if TYPE_CHECKING:
    Connection: TypeAlias = asyncpg.Connection[Any] | PoolConnectionProxy[Any]
else:
    Connection = asyncpg.Connection | PoolConnectionProxy
"""A connection, pooled or not: what code running inside a transaction receives."""


async def connect_pool(url: str, *, min_size: int = 2, max_size: int = 8) -> asyncpg.Pool:
    try:
        pool = await asyncpg.create_pool(
            url, min_size=min_size, max_size=max_size, timeout=10, command_timeout=30
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise TransientError(f"cannot reach PostgreSQL at {url}: {exc}") from exc
    assert pool is not None
    return pool
