"""An orchestrator hosted by a participant runs that participant's commands in-process, in
its own transaction: no message, and the reply steers the saga at once. A handler that fails
is rolled back to its savepoint and its command goes over the broker after all."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

import asyncpg
import pytest
from examples.shop.saga import RESERVE_FIRST

from sagakit import Action, MessageContext, Parallel, SagaDefinition, Service, Step, start_saga
from sagakit.db import migrate
from sagakit.messaging import new_message
from sagakit.orchestration import Orchestrator, store
from tests.integration.test_orchestrator import SAGAS, Clock


async def swallows_a_database_error(ctx: MessageContext) -> None:
    """A handler that catches a failed statement itself (its transaction is aborted)."""
    with contextlib.suppress(asyncpg.DataError):
        await ctx.tx.execute("SELECT 1 / 0")
    await ctx.reply("order.confirmed")


async def raises_connection_error(ctx: MessageContext) -> None:
    raise ConnectionError("the fulfilment API is down")  # not the database: sent instead


async def raises(ctx: MessageContext) -> None:
    raise RuntimeError("the order table is locked for maintenance")


def order_service(failing: dict[str, Any], *definitions: SagaDefinition) -> Service:
    """A participant (``order.confirm``, ``order.cancel``) that also orchestrates; a
    command type in ``failing`` writes its row and then fails that way."""
    flows = definitions or (RESERVE_FIRST,)
    svc = Service("order", sagas=flows, orchestrates=flows)

    async def act(ctx: MessageContext, cmd: dict[str, Any], reply: str) -> None:
        await ctx.tx.execute(
            "INSERT INTO acted (saga_id, command, grp) VALUES ($1, $2, $3)",
            cmd["saga_id"],
            ctx.envelope.type,
            ctx.group,
        )
        if ctx.envelope.type in failing:
            return await failing[ctx.envelope.type](ctx)
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


async def status(
    pool: asyncpg.Pool, saga_id: str, d: SagaDefinition = RESERVE_FIRST
) -> tuple[str, str]:
    async with pool.acquire() as conn:
        state = await store.load(conn, saga_id)
    assert state is not None
    return state.status, d.stage_name(state.step)


async def log_of(pool: asyncpg.Pool, saga_id: str) -> list[tuple[str, str]]:
    rows = await pool.fetch(
        "SELECT event, status FROM saga_log WHERE saga_id = $1 ORDER BY id", saga_id
    )
    return [(r["event"], r["status"]) for r in rows]


def test_only_the_commands_the_service_handles_are_local() -> None:
    orch = order_service({}).orchestrator("shop")
    assert sorted(orch.local) == ["order.cancel", "order.confirm"]
    assert orch.group == "shop.order"
    assert orch.local["order.confirm"].replies == ("order.confirmed",)
    alone = Service("orchestrator", orchestrates=[RESERVE_FIRST]).orchestrator("")
    assert alone.local == {}


async def test_a_local_command_runs_in_the_deciding_transaction(fresh_db: str) -> None:
    pool = await prepared(fresh_db)
    orch = order_service({}).orchestrator("")
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
    orch = order_service({}).orchestrator("")
    await start(pool, orch, "s2")
    await reply(pool, orch, "s2", "inventory.failed", reason="out of stock")
    assert await sent(pool) == ["inventory.reserve"], "nothing to release; cancel is local"
    assert await acted(pool) == [("order.cancel", "order")]
    assert (await log_of(pool, "s2"))[-1] == ("order.cancelled", "FAILED")
    await pool.close()


@pytest.mark.parametrize(
    "failure",
    [raises, raises_connection_error, swallows_a_database_error],
    ids=lambda f: f.__name__,
)
async def test_a_failing_local_handler_is_rolled_back_and_its_command_sent(
    fresh_db: str, failure: Any
) -> None:
    """Its writes are undone with its savepoint, the saga's step is stored as sent, the
    transaction that ran it commits, and the command goes to the broker, where the
    participant's consumer retries or dead-letters it. So does the step timer's re-send."""
    pool = await prepared(fresh_db)
    failing = {"order.confirm": failure}
    orch = order_service(failing).orchestrator("")
    orch.clock = clock = Clock()
    await start(pool, orch, "s3")
    await reply(pool, orch, "s3", "inventory.reserved", amount_cents=300)
    await reply(pool, orch, "s3", "payment.success")
    await reply(pool, orch, "s3", "inventory.completed")
    assert (await sent(pool))[-1] == "order.confirm"
    assert await acted(pool) == [], "the failed handler's write was rolled back"
    assert await status(pool, "s3") == ("RUNNING", "confirm_order")
    assert (await log_of(pool, "s3"))[-1] == ("inventory.completed", "RUNNING")

    failing.clear()  # the handler would succeed now: the re-send still travels
    clock.now += 3600
    assert await orch.fire_timers(pool) == 1
    assert (await sent(pool)).count("order.confirm") == 2, "a timer's re-send is a message"
    assert await acted(pool) == []
    await pool.close()


def act_step(name: str) -> Step:
    return Step(
        name,
        Action(f"x.{name}", f"x.{name}.done"),
        failure=(f"x.{name}.failed",),
        compensation=Action(f"x.{name}.undo", f"x.{name}.undone", failure=(f"x.{name}.later",)),
    )


TRIO = SagaDefinition(
    name="trio",
    steps=(Step("begin"), Parallel("all", act_step("a"), act_step("b"), act_step("c"))),
)


async def test_local_steps_of_one_group_each_see_the_saga_as_the_last_one_left_it(
    fresh_db: str,
) -> None:
    """a refuses, b and c succeed after it: both are undone, each decision taken on the
    state the one before it stored (one transaction, no write conflict)."""
    svc = Service("x", sagas=[TRIO], orchestrates=[TRIO])
    for t in TRIO.command_types:

        async def handle(ctx: MessageContext, cmd: dict[str, Any], t: str = t) -> None:
            await ctx.tx.execute("INSERT INTO acted VALUES ($1, $2, $3)", cmd["saga_id"], t, "")
            await ctx.reply(
                f"{t}.failed" if t == "x.a" else f"{t}.done" if "undo" not in t else f"{t}ne"
            )

        svc.handles(t)(handle)
    orch = svc.orchestrator("")
    pool = await prepared(fresh_db)
    async with pool.acquire() as conn, conn.transaction():
        assert await orch.begin(conn, TRIO, "t1", {})
    assert await sent(pool) == [], "every command ran in-process"
    assert [c for c, _ in await acted(pool)] == ["x.a", "x.b", "x.b.undo", "x.c", "x.c.undo"]
    async with pool.acquire() as conn:
        state = await store.load(conn, "t1")
    assert state is not None and state.status == "FAILED"
    await pool.close()


async def test_a_saga_started_in_process_starts_once_on_the_newest_version(
    fresh_db: str,
) -> None:
    """The same start again changes nothing; other data for the id is noted and ignored;
    a caller naming an older version starts the newest, as a start message would."""
    newer = replace(RESERVE_FIRST, version=2)
    orch = order_service({}, RESERVE_FIRST, newer).orchestrator("")
    pool = await prepared(fresh_db)
    placed = {"order_id": "o1", "customer_id": "c", "product_id": "p", "quantity": 1}
    for data in (placed, placed, {**placed, "quantity": 2}):
        async with pool.acquire() as conn, conn.transaction():
            await start_saga(conn, RESERVE_FIRST, data, saga_id="o1", orchestrator=orch)
    row = await pool.fetchrow("SELECT definition_version, data FROM sagas WHERE saga_id = 'o1'")
    assert row["definition_version"] == 2 and '"quantity": 1' in row["data"]
    assert await sent(pool) == ["inventory.reserve"], "no start message; one saga"
    notes = await pool.fetch("SELECT event, note FROM saga_log WHERE saga_id = 'o1' ORDER BY id")
    assert [(n["event"], n["note"]) for n in notes][1:] == [
        ("order.created", "ignored: other start data")
    ]
    await pool.close()


async def test_only_a_first_attempt_runs_in_process(fresh_db: str) -> None:
    """An undo that answers "not now" is tried again over the broker, at its pace, instead
    of spending its whole budget in one transaction."""
    svc = Service("x", sagas=[TRIO], orchestrates=[TRIO])
    answers = {"x.a": "x.a.failed", "x.b": "x.b.done", "x.c": "x.c.done"}
    answers |= {"x.b.undo": "x.b.later", "x.c.undo": "x.c.undone"}
    for t, answer in answers.items():

        async def handle(ctx: MessageContext, cmd: dict[str, Any], answer: str = answer) -> None:
            await ctx.reply(answer)

        svc.handles(t, replies=(answer,))(handle)
    pool = await prepared(fresh_db)
    orch = svc.orchestrator("")
    async with pool.acquire() as conn, conn.transaction():
        assert await orch.begin(conn, TRIO, "t2", {})
    assert await sent(pool) == ["x.b.undo"], "its second attempt"
    assert await status(pool, "t2", TRIO) == ("COMPENSATING", "all")
    await pool.close()
