"""An orchestrator hosted by a participant runs that participant's commands in-process, in
its own transaction: no message, and the reply steers the saga at once. A handler that fails
is rolled back to its savepoint and its command goes over the broker after all."""

from __future__ import annotations

from typing import Any

import asyncpg
from examples.shop.saga import RESERVE_FIRST

from sagakit import MessageContext, Service
from sagakit.db import migrate
from sagakit.messaging import new_message
from sagakit.orchestration import Orchestrator, store
from tests.integration.test_orchestrator import SAGAS, Clock


def order_service(failing: set[str]) -> Service:
    """A participant (``order.confirm``, ``order.cancel``) that also orchestrates; a
    command type in ``failing`` writes its row and then raises."""
    svc = Service("order", sagas=[RESERVE_FIRST], orchestrates=[RESERVE_FIRST])

    async def act(ctx: MessageContext, cmd: dict[str, Any], reply: str) -> None:
        await ctx.tx.execute(
            "INSERT INTO acted (saga_id, command, grp) VALUES ($1, $2, $3)",
            cmd["saga_id"],
            ctx.envelope.type,
            ctx.group,
        )
        if ctx.envelope.type in failing:
            raise RuntimeError("the order table is locked for maintenance")
        await ctx.reply(reply, {"order_id": cmd["saga_id"]})

    @svc.handles("order.confirm", replies=("order.confirmed",))
    async def confirm(ctx: MessageContext, cmd: dict[str, Any]) -> None:
        await act(ctx, cmd, "order.confirmed")

    @svc.handles("order.cancel", replies=("order.cancelled",))
    async def cancel(ctx: MessageContext, cmd: dict[str, Any]) -> None:
        await act(ctx, cmd, "order.cancelled")

    return svc


async def prepared(fresh_db: str) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(fresh_db, min_size=1, max_size=2)
    async with pool.acquire() as conn:
        await migrate(conn, SAGAS)
        await conn.execute("CREATE TABLE acted (saga_id text, command text, grp text)")
    return pool


async def start(pool: asyncpg.Pool, orch: Orchestrator, saga_id: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        assert await orch.begin(conn, RESERVE_FIRST, saga_id, {"order_id": saga_id})


async def reply(
    pool: asyncpg.Pool, orch: Orchestrator, saga_id: str, type_: str, **kw: Any
) -> None:
    env = new_message(type_, {"order_id": saga_id, **kw}, key=saga_id)
    async with pool.acquire() as conn, conn.transaction():
        ctx = MessageContext(env, conn, "order")
        await orch.on_reply(ctx, env.payload)
        await ctx.flush()


async def sent(pool: asyncpg.Pool) -> list[str]:
    return [r["topic"] for r in await pool.fetch("SELECT topic FROM sagakit_outbox ORDER BY id")]


async def acted(pool: asyncpg.Pool) -> list[tuple[str, str]]:
    rows = await pool.fetch("SELECT command, grp FROM acted ORDER BY command")
    return [(r["command"], r["grp"]) for r in rows]


async def status(pool: asyncpg.Pool, saga_id: str) -> tuple[str, str]:
    async with pool.acquire() as conn:
        state = await store.load(conn, saga_id)
    assert state is not None
    return state.status, RESERVE_FIRST.stage_name(state.step)


async def log_of(pool: asyncpg.Pool, saga_id: str) -> list[tuple[str, str]]:
    rows = await pool.fetch(
        "SELECT event, status FROM saga_log WHERE saga_id = $1 ORDER BY id", saga_id
    )
    return [(r["event"], r["status"]) for r in rows]


def test_only_the_commands_the_service_handles_are_local() -> None:
    orch = order_service(set()).orchestrator("shop")
    assert sorted(orch.local) == ["order.cancel", "order.confirm"]
    assert orch.group == "shop.order"
    assert orch.local["order.confirm"].replies == ("order.confirmed",)
    alone = Service("orchestrator", orchestrates=[RESERVE_FIRST]).orchestrator("")
    assert alone.local == {}


async def test_a_local_command_runs_in_the_deciding_transaction(fresh_db: str) -> None:
    pool = await prepared(fresh_db)
    orch = order_service(set()).orchestrator("")
    await start(pool, orch, "s1")
    await reply(pool, orch, "s1", "inventory.reserved", amount_cents=300)
    await reply(pool, orch, "s1", "payment.success")
    await reply(pool, orch, "s1", "inventory.completed")
    assert (await status(pool, "s1"))[0] == "COMPLETED"
    assert await sent(pool) == ["inventory.reserve", "payment.process", "inventory.complete"]
    assert await acted(pool) == [("order.confirm", "order")]
    assert (await log_of(pool, "s1"))[-2:] == [
        ("inventory.completed", "RUNNING"),
        ("order.confirmed", "COMPLETED"),
    ]
    await pool.close()


async def test_a_local_compensation_ends_the_saga_at_once(fresh_db: str) -> None:
    pool = await prepared(fresh_db)
    orch = order_service(set()).orchestrator("")
    await start(pool, orch, "s2")
    await reply(pool, orch, "s2", "inventory.failed", reason="out of stock")
    assert await sent(pool) == ["inventory.reserve"], "nothing to release; cancel is local"
    assert await acted(pool) == [("order.cancel", "order")]
    assert (await log_of(pool, "s2"))[-1] == ("order.cancelled", "FAILED")
    await pool.close()


async def test_a_failing_local_handler_is_rolled_back_and_its_command_sent(
    fresh_db: str,
) -> None:
    """Its writes are undone with its savepoint, the saga's step is stored as sent, and the
    command goes to the broker, where the participant's consumer retries or dead-letters
    it. Once the cause is gone, the step's timer runs it locally again."""
    failing = {"order.confirm"}
    pool = await prepared(fresh_db)
    orch = order_service(failing).orchestrator("")
    orch.clock = clock = Clock()
    await start(pool, orch, "s3")
    await reply(pool, orch, "s3", "inventory.reserved", amount_cents=300)
    await reply(pool, orch, "s3", "payment.success")
    await reply(pool, orch, "s3", "inventory.completed")
    assert (await sent(pool))[-1] == "order.confirm"
    assert await acted(pool) == [], "the failed handler's write was rolled back"
    assert await status(pool, "s3") == ("RUNNING", "confirm_order")

    failing.clear()
    clock.now += 3600
    assert await orch.fire_timers(pool) == 1
    assert (await sent(pool)).count("order.confirm") == 1, "run locally, not sent again"
    assert await acted(pool) == [("order.confirm", "order")]
    assert (await log_of(pool, "s3"))[-1] == ("order.confirmed", "COMPLETED")
    await pool.close()
