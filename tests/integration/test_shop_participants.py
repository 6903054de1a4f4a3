"""The shop's participants under redelivery, re-sends and reordering: a command and its
compensation may arrive in either order (the command timed out, was compensated, then
arrived), each more than once. Whatever the order, the handlers must leave stock and money
as if the step had not happened, answer a repeat as they answered the first, and never
un-sell a reserve-first order that was confirmed."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from examples.shop import inventory, payment

from sagakit import Mode, SagakitError
from sagakit.db import MigrationSet, migrate
from sagakit.messaging import MessageContext, new_message

ORDER = {"customer_id": "c1", "product_id": "p1", "quantity": 3, "amount_cents": 300}
STOCK, BALANCE = 10, 1_000


@pytest.fixture
async def conn(fresh_db: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(fresh_db)
    await migrate(c, MigrationSet.from_package("inventory", "examples.shop.inventory"))
    await migrate(c, MigrationSet.from_package("payment", "examples.shop.payment"))
    await c.execute(
        "INSERT INTO products (product_id, available, initial, price_cents)"
        " VALUES ('p1', $1, $1, 100)",
        STOCK,
    )
    await c.execute("INSERT INTO customers VALUES ('c1', $1)", BALANCE)
    yield c
    await c.close()


async def handle(conn: asyncpg.Connection, command: str, order_id: str) -> str:
    """Run the service's handler of ``command`` in a transaction of its own, as the consumer
    runtime does; return the type it replied with."""
    svc = inventory.service if command.startswith("inventory.") else payment.service
    routes = svc.router(Mode.ORCHESTRATION, "").routes.values()
    (route,) = [r for r in routes if r.message_type == command]
    env = new_message(command, {"order_id": order_id, **ORDER}, key=order_id)
    ctx = MessageContext(env, conn, svc.name, replies=route.replies)
    async with conn.transaction():
        await route.handler(ctx, route.parse(env))
    (reply,) = ctx.outgoing
    return reply.type


def orders(*commands: str) -> list[tuple[str, ...]]:
    """Every distinct order of the commands, each sent twice."""
    return sorted(set(itertools.permutations(commands * 2)))


async def books(conn: asyncpg.Connection) -> dict[str, Any]:
    stock = await conn.fetchrow("SELECT available, reserved, sold FROM products")
    money = await conn.fetchrow(
        "SELECT balance_cents, charged_cents, refunded_cents FROM customers"
    )
    return {"stock": tuple(stock), "money": tuple(money)}


@pytest.mark.parametrize("sequence", orders("inventory.sell", "inventory.restock"))
async def test_a_sale_and_its_restock_in_any_order_leave_the_stock(
    conn: asyncpg.Connection, sequence: tuple[str, ...]
) -> None:
    oid = str(uuid.uuid4())
    answers = {c: [] for c in sequence}  # type: dict[str, list[str]]
    for command in sequence:
        answers[command].append(await handle(conn, command, oid))
        stock = (await books(conn))["stock"]
        assert sum(stock) == STOCK, "stock is conserved after every command"
    assert (await books(conn))["stock"] == (STOCK, 0, 0)
    sold_first = sequence[0] == "inventory.sell"
    assert answers["inventory.sell"][0] == ("inventory.sold" if sold_first else "inventory.failed")
    assert set(answers["inventory.restock"]) == {"inventory.restocked"}
    # and nothing sells it afterwards: the order's row is the restock's
    assert await handle(conn, "inventory.sell", oid) == "inventory.failed"
    assert (await books(conn))["stock"] == (STOCK, 0, 0)


@pytest.mark.parametrize("sequence", orders("payment.process", "payment.refund"))
async def test_a_charge_and_its_refund_in_any_order_leave_the_money(
    conn: asyncpg.Connection, sequence: tuple[str, ...]
) -> None:
    oid = str(uuid.uuid4())
    refunded_yet = False
    for command in sequence:
        answer = await handle(conn, command, oid)
        if command == "payment.refund":
            refunded_yet = True
        else:  # a repeat before the refund gets the first answer; after it, a refusal
            assert answer == ("payment.failed" if refunded_yet else "payment.success")
    balance, charged, refunded = (await books(conn))["money"]
    assert (balance, charged - refunded) == (BALANCE, 0)


@pytest.mark.parametrize("sequence", orders("inventory.reserve", "inventory.release"))
async def test_a_reservation_and_its_release_in_any_order_leave_the_stock(
    conn: asyncpg.Connection, sequence: tuple[str, ...]
) -> None:
    oid = str(uuid.uuid4())
    for command in sequence:
        await handle(conn, command, oid)
    assert (await books(conn))["stock"] == (STOCK, 0, 0)


async def test_a_release_never_unsells_a_confirmed_order(conn: asyncpg.Connection) -> None:
    """Reserve-first sells after the pivot; a release that comes later (replayed from the
    dead letters, say) is refused instead of putting sold stock back."""
    oid = str(uuid.uuid4())
    assert await handle(conn, "inventory.reserve", oid) == "inventory.reserved"
    assert await handle(conn, "inventory.complete", oid) == "inventory.completed"
    with pytest.raises(SagakitError, match="already sold"):
        await handle(conn, "inventory.release", oid)
    assert (await books(conn))["stock"] == (STOCK - 3, 0, 3)


async def test_pay_first_without_a_price_is_declined_and_writes_nothing(
    conn: asyncpg.Connection,
) -> None:
    svc = payment.service
    (route,) = [
        r
        for r in svc.router(Mode.ORCHESTRATION, "").routes.values()
        if r.message_type == "payment.process"
    ]
    oid = str(uuid.uuid4())
    env = new_message("payment.process", {"order_id": oid, **ORDER, "amount_cents": None}, key=oid)
    ctx = MessageContext(env, conn, svc.name, replies=route.replies)
    async with conn.transaction():
        await route.handler(ctx, route.parse(env))
    (reply,) = ctx.outgoing
    assert (reply.type, reply.payload) == ("payment.failed", {"reason": "no price known for p1"})
    assert (await books(conn))["money"] == (BALANCE, 0, 0)
