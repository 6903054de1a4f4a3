"""Where the console reads from: the database of each service that keeps sagas (the
orchestrator; in choreography, the tracker), and the dead-letter topic."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from sagakit import deadletters
from sagakit.deadletters import DeadLetter
from sagakit.messaging.transport.port import Transport
from sagakit.orchestration import GAUGES, store
from sagakit.runtime.service import Mode, Service
from sagakit.saga import SagaDefinition

STUCK = GAUGES["sagakit_sagas_stuck"].split(" WHERE ", 1)[1]
"""Running or compensating, not parked, and nothing has moved it for a minute past its
timer: the condition ``sagakit_sagas_stuck`` counts."""

FILTERS = {
    "running": "status = 'RUNNING'",
    "compensating": "status = 'COMPENSATING'",
    "completed": "status = 'COMPLETED'",
    "failed": "status = 'FAILED'",
    "compensation_failed": "status = 'COMPENSATION_FAILED'",
    "stuck": STUCK,
    "parked": "parked IS NOT NULL",
}
"""The status filters of the saga list, each a condition on ``sagas``."""


@dataclass
class Keeper:
    """A service keeping sagas, and a pool on its database."""

    service: Service
    pool: asyncpg.Pool

    @property
    def name(self) -> str:
        return self.service.name

    @property
    def definitions(self) -> Mapping[tuple[str, int], SagaDefinition]:
        return {(d.name, d.version): d for d in self.service.followed}

    def definition(self, name: str, version: int) -> SagaDefinition | None:
        return self.definitions.get((name, version))

    async def mode(self) -> Mode:
        async with self.pool.acquire() as conn:
            recorded = await store.recorded_mode(conn)
        return Mode(recorded or Mode.ORCHESTRATION)

    async def listing(
        self, *, status: str | None, definition: str | None, search: str, limit: int
    ) -> list[dict[str, Any]]:
        where = ["($1::text IS NULL OR definition = $1)", "($2 = '' OR saga_id LIKE $2 || '%')"]
        if status:
            where.append(FILTERS[status])
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT saga_id, definition, definition_version, status, step, reason, parked,"
                " started_at, updated_at, extract(epoch FROM now())::float8 AS now,"
                f" ({STUCK}) AS stuck FROM sagas WHERE {' AND '.join(where)}"
                " ORDER BY updated_at DESC LIMIT $3",
                definition,
                search.replace("%", r"\%").replace("_", r"\_"),
                limit,
            )
        return [dict(r, keeper=self.name) for r in rows]

    async def counts(self) -> dict[str, int]:
        """Sagas per filter of :data:`FILTERS`."""
        cases = ", ".join(f"count(*) FILTER (WHERE {sql}) AS {k}" for k, sql in FILTERS.items())
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(f"SELECT {cases}, count(*) AS all FROM sagas")
        return dict(row) if row else {}

    async def names(self) -> list[str]:
        async with self.pool.acquire() as conn:
            return [r[0] for r in await conn.fetch("SELECT DISTINCT definition FROM sagas")]

    async def saga(self, saga_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        async with self.pool.acquire() as conn:
            found = await store.timeline(conn, saga_id)
        if found is None:
            return None
        row, log = found
        return dict(row), [dict(r) for r in log]

    async def last_change(self) -> int:
        """The newest log line's id: it grows with every change of every saga."""
        async with self.pool.acquire() as conn:
            return int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM saga_log"))


@dataclass
class Letters:
    """The dead-letter topic, and the databases of the services whose groups gave up on
    them (where a replay is recorded)."""

    transport: Transport
    namespace: str
    pools: Mapping[str, asyncpg.Pool]
    """Consumer group -> its service's database."""

    async def read(self, limit: int = 500) -> list[tuple[DeadLetter, dict[str, Any] | None]]:
        """Each dead letter, and its replay (who, when, why) if it was replayed."""
        letters = await deadletters.read(self.transport, self.namespace, limit=limit, idle=0.5)
        replays: dict[tuple[str, str], dict[str, Any]] = {}
        for group, pool in self.pools.items():
            ids = [str(d.recorded_id) for d in letters if d.group == group]
            if not ids:
                continue
            async with pool.acquire() as conn:
                for r in await deadletters.replays(conn, group, ids):
                    replays[(group, str(r["message_id"]))] = dict(r)
        return [(d, replays.get((d.group, str(d.recorded_id)))) for d in letters]

    async def replay(
        self, wanted: Sequence[tuple[int, int]], *, by: str, note: str
    ) -> tuple[list[DeadLetter], list[str]]:
        """Replay the letters at (partition, offset): the ones replayed, and why others
        were not."""
        letters = {
            (d.partition, d.offset): d
            for d in await deadletters.read(self.transport, self.namespace, idle=0.5)
        }
        done: list[DeadLetter] = []
        skipped: list[str] = []
        async with self.transport.producer() as producer:
            for at in wanted:
                letter = letters.get(at)
                pool = self.pools.get(letter.group) if letter else None
                if letter is None or pool is None:
                    why = "no such letter" if letter is None else f"no service of {letter.group}"
                    skipped.append(f"{at[0]}:{at[1]}: {why}")
                    continue
                async with pool.acquire() as conn:
                    ok = await deadletters.replay(
                        letter, producer=producer, consumer_db=conn, by=by, note=note
                    )
                if ok:
                    done.append(letter)
                else:
                    skipped.append(f"{at[0]}:{at[1]}: replayed already")
        return done, skipped


def pretty(value: Any) -> str:
    """A payload as indented JSON (bytes as text where they are)."""
    if isinstance(value, bytes):
        try:
            value = json.loads(value)
        except ValueError:
            text: str = value.decode("utf-8", "replace")
            return text
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)
