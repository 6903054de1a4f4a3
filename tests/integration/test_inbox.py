from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg

from sagakit.messaging import inbox


async def test_claims_are_once_per_group_and_pruning_forgets_old_ones(fresh_db: str) -> None:
    conn = await asyncpg.connect(fresh_db)
    try:
        a, b = uuid.uuid4(), uuid.uuid4()
        assert await inbox.claim(conn, "g1", a)
        assert not await inbox.claim(conn, "g1", a)
        assert await inbox.claim(conn, "g2", a), "another group handles it too"
        assert await inbox.claim_many(conn, "g1", [a, b, b]) == {b}
        await conn.execute(
            "UPDATE sagakit_inbox SET handled_at = now() - interval '10 days'"
            " WHERE message_id = $1",
            a,
        )
        assert await inbox.prune(conn, timedelta(days=7)) == 2
        assert await inbox.claim(conn, "g1", a), "forgotten after the retention"
        assert not await inbox.claim(conn, "g1", b)
    finally:
        await conn.close()
