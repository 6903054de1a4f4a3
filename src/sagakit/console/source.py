"""Where the console reads from: the database of each service that keeps sagas (the
orchestrator; in choreography, the tracker), and the dead-letter topic."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
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

    @cached_property
    def definitions(self) -> Mapping[tuple[str, int], SagaDefinition]:
        """Every version it hosts (built once: the list looks one up per row)."""
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

    async def read(self, shown: int = 500) -> list[tuple[DeadLetter, dict[str, Any] | None]]:
        """The newest ``shown`` dead letters, newest first, each with its replay (who, when,
        why) if it was replayed."""
        letters = await self._all()
        letters = sorted(letters, key=lambda d: (d.offset, d.partition), reverse=True)[:shown]
        replays: dict[tuple[str, int, int], dict[str, Any]] = {}
        for group, pool in self.pools.items():
            ids = [str(d.recorded_id) for d in letters if d.group == group]
            if not ids:
                continue
            async with pool.acquire() as conn:
                for r in await deadletters.replays(conn, group, ids):
                    replays[(group, r["dlq_partition"], r["dlq_offset"])] = dict(r)
        return [(d, replays.get((d.group, d.partition, d.offset))) for d in letters]

    async def _all(self) -> list[DeadLetter]:
        return await deadletters.read(self.transport, self.namespace, limit=MAX_READ, idle=0.5)

    async def replay(
        self, wanted: Sequence[tuple[int, int]], *, by: str, note: str
    ) -> tuple[list[DeadLetter], list[str]]:
        """Replay the letters at (partition, offset): the ones replayed, and why others
        were not. A record several groups gave up on (a saga event every follower refused)
        is released in every one of them and published once: replayed for one group only,
        the others would skip it as still given up on, and the saga's copies would part."""
        letters = await self._all()
        at = {(d.partition, d.offset): d for d in letters}
        done: list[DeadLetter] = []
        skipped: list[str] = []
        for where in wanted:
            letter = at.get(where)
            pool = self.pools.get(letter.group) if letter else None
            if letter is None or pool is None:
                why = "no such letter" if letter is None else f"no service of {letter.group}"
                skipped.append(f"{where[0]}:{where[1]}: {why}")
                continue
            siblings = [
                d
                for d in letters
                if d.group != letter.group
                and d.group in self.pools
                and (d.topic, d.recorded_id) == (letter.topic, letter.recorded_id)
            ]
            others = False
            for other in {d.group: d for d in siblings}.values():
                async with self.pools[other.group].acquire() as conn:
                    others |= await deadletters.replay(
                        other, consumer_db=conn, by=by, note=note, publish=False
                    )
            async with pool.acquire() as conn:  # published once, for every group released
                replayed = await deadletters.replay(
                    letter, consumer_db=conn, by=by, note=note, others_released=others
                )
            if replayed:
                done.append(letter)
            else:
                skipped.append(f"{where[0]}:{where[1]}: replayed already")
        return done, skipped


MAX_READ = 100_000
"""Dead letters read from the topic at most (the page shows the newest of them)."""


def pretty(value: Any) -> str:
    """A payload as indented JSON (bytes as text where they are)."""
    if isinstance(value, bytes):
        try:
            value = json.loads(value)
        except ValueError:
            text: str = value.decode("utf-8", "replace")
            return text
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)
