"""Choreography delivers events late, twice, or in another order than sent. The order
service's state machine must land on the same outcome whatever the order, and an order
can never be confirmed after it was cancelled (the seed's race) or the reverse."""

from __future__ import annotations

import itertools
import uuid

import asyncpg
import pytest
from examples.shop.order.handlers import router
from examples.shop.order.lifecycle import IllegalTransition

from sagakit.db import MigrationSet, migrate
from sagakit.messaging import MessageContext, new_message
from sagakit.runtime.host import Mode

ORDERS = MigrationSet.from_package("order", "examples.shop.order")
ROUTES = router(Mode.CHOREOGRAPHY, "").routes

# What the order service can receive for one order, by how the saga went.
OUTCOMES = {
    "declined": (["payment.failed"], "CANCELLED"),
    "sold": (["inventory.reserved"], "CONFIRMED"),
    "refunded": (["inventory.failed", "payment.refunded"], "CANCELLED"),
}


async def deliver(conn: asyncpg.Connection, order_id: str, event: str) -> str:
    """Handle one event in its own transaction, as the consumer runtime would; return
    'ok' or 'refused' (the runtime would dead-letter it)."""
    env = new_message(event, {"order_id": order_id, "reason": f"via {event}"}, key=order_id)
    route = ROUTES[event]
    try:
        async with conn.transaction():
            await route.handler(MessageContext(env, conn, "order"), route.parse(env))
    except IllegalTransition:
        return "refused"
    return "ok"


async def new_order(conn: asyncpg.Connection) -> str:
    oid = str(uuid.uuid4())
    await conn.execute(
        "INSERT INTO orders (order_id, customer_id, product_id, quantity, status)"
        " VALUES ($1, 'c', 'p', 1, 'PENDING')",
        oid,
    )
    return oid


@pytest.fixture
async def conn(fresh_db: str):  # type: ignore[no-untyped-def]
    c = await asyncpg.connect(fresh_db)
    await migrate(c, ORDERS)
    yield c
    await c.close()


@pytest.mark.parametrize("outcome", list(OUTCOMES))
async def test_every_order_and_duplication_gives_the_same_outcome(
    conn: asyncpg.Connection, outcome: str
) -> None:
    events, final = OUTCOMES[outcome]
    deliveries = events * 2  # each event delivered twice
    for sequence in set(itertools.permutations(deliveries)):
        oid = await new_order(conn)
        results = [await deliver(conn, oid, e) for e in sequence]
        row = await conn.fetchrow("SELECT status, reason FROM orders WHERE order_id = $1", oid)
        assert row["status"] == final, sequence
        assert results.count("refused") == 0, sequence
        if final == "CANCELLED":
            assert row["reason"] is not None, "the reason survives reordering"


async def test_intermediate_state_waits_for_the_refund(conn: asyncpg.Connection) -> None:
    oid = await new_order(conn)
    await deliver(conn, oid, "inventory.failed")
    status = await conn.fetchval("SELECT status FROM orders WHERE order_id = $1", oid)
    assert status == "CANCELLING", "not CANCELLED before the money is back"
    await deliver(conn, oid, "payment.refunded")
    assert await conn.fetchval("SELECT status FROM orders WHERE order_id = $1", oid) == "CANCELLED"


@pytest.mark.parametrize(
    "first, then",
    [
        ("payment.failed", "inventory.reserved"),
        ("payment.refunded", "inventory.reserved"),
        ("inventory.failed", "inventory.reserved"),
        ("inventory.reserved", "payment.failed"),
        ("inventory.reserved", "inventory.failed"),
        ("inventory.reserved", "payment.refunded"),
    ],
)
async def test_contradicting_late_events_are_refused(
    conn: asyncpg.Connection, first: str, then: str
) -> None:
    """A cancelled order is never confirmed afterwards, nor a confirmed one cancelled: the
    late contradicting event is refused (and would be dead-lettered for an operator)."""
    oid = await new_order(conn)
    assert await deliver(conn, oid, first) == "ok"
    before = await conn.fetchval("SELECT status FROM orders WHERE order_id = $1", oid)
    assert await deliver(conn, oid, then) == "refused"
    after = await conn.fetchval("SELECT status FROM orders WHERE order_id = $1", oid)
    assert after == before


@pytest.mark.parametrize("arrival", list(itertools.permutations(range(3))))
async def test_the_price_replica_keeps_the_newest_version(
    fresh_db: str, arrival: tuple[int, ...]
) -> None:
    """product.updated events of one product, in any arrival order (and one twice): the
    replica ends at the newest version's price."""
    conn = await asyncpg.connect(fresh_db)
    await migrate(conn, ORDERS)
    route = ROUTES["product.updated"]
    for n in (*arrival, arrival[0]):
        payload = {"product_id": "p", "price_cents": 100 * (n + 1), "version": n}
        env = new_message("product.updated", payload, key="p")
        async with conn.transaction():
            await route.handler(MessageContext(env, conn, "order"), route.parse(env))
    assert await conn.fetchval("SELECT price_cents FROM prices WHERE product_id = 'p'") == 300
    await conn.close()
