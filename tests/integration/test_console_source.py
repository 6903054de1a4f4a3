"""What the console reads from a saga keeper's database: the status filters (stuck and
parked among them), their counts, the id search, and one saga's story."""

from __future__ import annotations

import time

import asyncpg
from examples.shop.orchestrator import service

from sagakit.console.source import FILTERS, Keeper
from sagakit.orchestration import Orchestrator, store
from tests.integration.test_orchestrator import Clock, start_sagas


async def test_filters_counts_and_search(fresh_db: str) -> None:
    clock = Clock()
    clock.now = time.time()
    orch = Orchestrator(service.orchestrates, clock=clock)
    pool = await asyncpg.create_pool(fresh_db, min_size=1, max_size=2)
    try:
        ids = await start_sagas(pool, orch, 4)  # running, waiting on inventory.reserve
        async with pool.acquire() as conn:
            # order-0: nothing has moved it for two minutes past its timer: stuck.
            await conn.execute(
                "UPDATE sagas SET due_at = $2 WHERE saga_id = $1", ids[0], time.time() - 120
            )
            await store.park(conn, ids[1], "reserve_stock", "cannot read it")
            async with conn.transaction():
                await orch.cancel(conn, ids[2], "customer asked", by="ada")
        keeper = Keeper(service, pool)
        counts = await keeper.counts()
        assert counts["all"] == 4
        assert (counts["running"], counts["compensating"]) == (3, 1)
        assert (counts["stuck"], counts["parked"]) == (1, 1)
        assert set(counts) == {*FILTERS, "all"}

        async def listed(**filters: str | None) -> list[str]:
            found = await keeper.listing(
                status=filters.get("status"),
                definition=filters.get("definition"),
                search=filters.get("search") or "",
                limit=50,
            )
            return sorted(r["saga_id"] for r in found)

        assert await listed(status="stuck") == [ids[0]]
        assert await listed(status="parked") == [ids[1]]
        assert await listed(status="compensating") == [ids[2]]
        assert await listed(search="order-3") == [ids[3]]
        assert await listed(search="order_") == [], "LIKE wildcards are searched as text"
        assert await listed(definition="order_pay_first") == []
        assert len(await listed(definition="order")) == 4
        found = await keeper.saga(ids[2])
        assert found is not None
        row, log = found
        assert row["status"] == "COMPENSATING"
        assert log[-1]["event"] == "cancelled by ada: customer asked"
        assert await keeper.last_change() >= len(log)
    finally:
        await pool.close()
