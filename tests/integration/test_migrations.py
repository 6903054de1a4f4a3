from __future__ import annotations

import json
import uuid

import asyncpg

from sagakit.config import database_url
from sagakit.db import Migration, MigrationSet, migrate
from sagakit.devstack import StackInfo
from sagakit.messaging.codec import unpack_headers

SAMPLE = MigrationSet(
    "sample",
    (
        Migration(1, "create", "CREATE TABLE sample (id int PRIMARY KEY)"),
        Migration(2, "column", "ALTER TABLE sample ADD COLUMN name text"),
    ),
)


async def test_migrations_apply_once_and_record_versions(fresh_db: str) -> None:
    conn = await asyncpg.connect(fresh_db)
    try:
        assert await migrate(conn, SAMPLE) == ["sample:0001", "sample:0002"]
        assert await migrate(conn, SAMPLE) == []
        rows = await conn.fetch(
            "SELECT version, name FROM sagakit_schema_version WHERE component = 'sample'"
            " ORDER BY version"
        )
        assert [(r["version"], r["name"]) for r in rows] == [(1, "create"), (2, "column")]
    finally:
        await conn.close()


async def test_concurrent_starts_apply_each_migration_once(fresh_db: str) -> None:
    import asyncio

    conns = [await asyncpg.connect(fresh_db) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(c, SAMPLE) for c in conns))
        assert sorted(len(r) for r in results) == [0, 0, 0, 2]
    finally:
        for c in conns:
            await c.close()


def test_packaged_migrations_are_numbered() -> None:
    mset = MigrationSet.from_package("messaging", "sagakit.messaging")
    assert [m.version for m in mset.migrations] == list(range(1, len(mset.migrations) + 1))


async def test_rows_queued_before_the_binary_outbox_survive_its_migration(
    stack: StackInfo,
) -> None:
    """An outbox row written with a text key and jsonb headers (before 0002) is sent with
    the same key and headers after the upgrade."""
    full = MigrationSet.from_package("messaging", "sagakit.messaging")
    first = MigrationSet("messaging", full.migrations[:1])
    second = MigrationSet("messaging", full.migrations[:2])
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(stack.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    conn = await asyncpg.connect(database_url(stack.database_url, name))
    try:
        await migrate(conn, first)
        await conn.execute(
            "INSERT INTO sagakit_outbox (lane, topic, key, message_id, value, headers)"
            " VALUES (1, 't', 'order-7', gen_random_uuid(), '\\x7b7d', $1)",
            json.dumps({"traceparent": "00-abc", "é": "ü"}),
        )
        assert await migrate(conn, second) == ["messaging:0002"]
        row = await conn.fetchrow("SELECT key, headers FROM sagakit_outbox")
        assert row["key"] == b"order-7"
        assert dict(unpack_headers(row["headers"])) == {
            "traceparent": b"00-abc",
            "é": "ü".encode(),
        }
    finally:
        await conn.close()
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()
