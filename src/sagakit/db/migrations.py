"""Versioned SQL migrations, applied at service start.

Each component (``messaging``, ``orchestrator``, a service's own) owns a folder of
``NNNN_name.sql`` files. Applying is idempotent: every applied version is recorded in
``sagakit_schema_version``, and an advisory lock lets several processes start at once
without racing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

from sagakit.db.pool import Connection

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x5A6A_0001

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS sagakit_schema_version (
    component  text        NOT NULL,
    version    integer     NOT NULL,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (component, version)
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


@dataclass(frozen=True)
class MigrationSet:
    component: str
    migrations: tuple[Migration, ...]

    @classmethod
    def from_package(cls, component: str, package: str, folder: str = "sql") -> MigrationSet:
        root: Traversable = resources.files(package).joinpath(folder)
        found = []
        for entry in root.iterdir():
            match = _FILE.match(entry.name)
            if match:
                found.append(Migration(int(match[1]), match[2], entry.read_text()))
        found.sort(key=lambda m: m.version)
        versions = [m.version for m in found]
        if len(set(versions)) != len(versions):
            raise ValueError(f"{component}: duplicate migration versions {versions}")
        return cls(component, tuple(found))


async def migrate(conn: Connection, *sets: MigrationSet) -> list[str]:
    """Apply every pending migration; return ``component:version`` of those applied."""
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(_VERSION_TABLE)
        done = {
            (r["component"], r["version"])
            for r in await conn.fetch("SELECT component, version FROM sagakit_schema_version")
        }
        for mset in sets:
            for m in mset.migrations:
                if (mset.component, m.version) in done:
                    continue
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO sagakit_schema_version (component, version, name)"
                    " VALUES ($1, $2, $3)",
                    mset.component,
                    m.version,
                    m.name,
                )
                applied.append(f"{mset.component}:{m.version:04d}")
    return applied
