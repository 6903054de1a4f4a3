"""Inbox: remember which messages a consumer group has handled, in the handler's transaction.

Because the inbox row and the handler's effects commit together, a redelivered message
(the consumer died after the database commit, before the offset commit; or a relay
published twice) finds its row and is skipped: effectively-once handling on top of
at-least-once delivery.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

from sagakit.db.pool import Connection

_CLAIM = """
INSERT INTO sagakit_inbox (consumer_group, message_id, dead_lettered) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING RETURNING true
"""


async def claim(
    tx: Connection, group: str, message_id: uuid.UUID, *, dead_lettered: bool = False
) -> bool:
    """True the first time ``group`` sees ``message_id``; False for a duplicate.
    ``dead_lettered`` marks a message given up on (a replay may take it back once)."""
    return bool(await tx.fetchval(_CLAIM, group, message_id, dead_lettered))


async def release_dead_letter(tx: Connection, group: str, message_id: uuid.UUID) -> bool:
    """Forget a dead-lettered message so that it can be handled when replayed; False if it
    is not (or no longer) dead-lettered: replayed already, or handled meanwhile."""
    return bool(
        await tx.fetchval(
            "DELETE FROM sagakit_inbox WHERE consumer_group = $1 AND message_id = $2"
            " AND dead_lettered RETURNING true",
            group,
            message_id,
        )
    )


async def claim_many(
    tx: Connection, group: str, message_ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Claim a batch in one statement; return the ids seen for the first time."""
    rows = await tx.fetch(
        "INSERT INTO sagakit_inbox (consumer_group, message_id)"
        " SELECT $1, unnest($2::uuid[]) ON CONFLICT DO NOTHING RETURNING message_id",
        group,
        list(message_ids),
    )
    return {r["message_id"] for r in rows}


async def prune(conn: Connection, older_than: timedelta, batch: int = 10_000) -> int:
    """Forget up to ``batch`` handled messages older than ``older_than`` (call until it
    returns less than ``batch``; short transactions keep the hot path free). Keep the
    retention longer than any redelivery can take (offset retention, relay outages)."""
    status: str = await conn.execute(
        "DELETE FROM sagakit_inbox WHERE ctid = ANY(ARRAY(SELECT ctid FROM sagakit_inbox"
        " WHERE handled_at < now() - $1::interval LIMIT $2))",
        older_than,
        batch,
    )
    return int(status.split()[-1])
