from __future__ import annotations

import asyncpg

from sagakit.db import Migration, MigrationSet, migrate

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
