"""The orchestrator runtime on real PostgreSQL: timers with replicas, optimistic writes."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from examples.shop.saga import RESERVE_FIRST

from sagakit.db import MigrationSet, migrate
from sagakit.errors import ConcurrencyConflict
from sagakit.messaging import MessageContext, new_message
from sagakit.orchestration import Orchestrator, store

SAGAS = MigrationSet.from_package("orchestrator", "sagakit.orchestration")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def start_sagas(pool: asyncpg.Pool, orch: Orchestrator, n: int) -> list[str]:
    ids = [f"order-{i}" for i in range(n)]
    async with pool.acquire() as conn:
        await migrate(conn, SAGAS)
        for saga_id in ids:
            env = new_message("order.created", {"order_id": saga_id}, key=saga_id)
            async with conn.transaction():
                ctx = MessageContext(env, conn, "orchestrator")
                await orch.on_start(ctx, env.payload)
                await ctx.flush()
    return ids


async def commands(pool: asyncpg.Pool) -> list[tuple[str, str]]:
    rows = await pool.fetch("SELECT topic, key FROM sagakit_outbox ORDER BY id")
    return [(r["topic"], r["key"].decode()) for r in rows]


async def test_two_replicas_fire_each_timer_once(fresh_db: str) -> None:
    clock = Clock()
    orch = Orchestrator([RESERVE_FIRST], clock=clock)
    pools = [await asyncpg.create_pool(fresh_db, min_size=1, max_size=2) for _ in range(2)]
    ids = await start_sagas(pools[0], orch, 300)
    assert len(await commands(pools[0])) == 300  # one inventory.reserve each
    clock.now += RESERVE_FIRST.steps[1].timeout + 0.1

    async def replica(pool: asyncpg.Pool) -> int:
        fired = 0
        while (n := await orch.fire_timers(pool, limit=20)) > 0:
            fired += n
        return fired

    fired = await asyncio.gather(*(replica(p) for p in pools))
    assert sum(fired) == 300 and all(f > 0 for f in fired), fired
    sent = await commands(pools[0])
    assert sorted(k for t, k in sent[300:]) == sorted(ids), "each saga re-sent exactly once"
    assert {t for t, _ in sent[300:]} == {"inventory.reserve"}
    for p in pools:
        await p.close()


async def test_unanswered_payment_is_refunded_released_and_cancelled(fresh_db: str) -> None:
    clock = Clock()
    orch = Orchestrator([RESERVE_FIRST], clock=clock)
    pool = await asyncpg.create_pool(fresh_db, min_size=1, max_size=2)
    [saga_id] = await start_sagas(pool, orch, 1)

    async def reply(type_: str, **payload: Any) -> None:
        env = new_message(type_, {"order_id": saga_id, **payload}, key=saga_id)
        async with pool.acquire() as conn, conn.transaction():
            ctx = MessageContext(env, conn, "orchestrator")
            await orch.on_reply(ctx, env.payload)
            await ctx.flush()

    await reply("inventory.reserved", amount_cents=300)
    for wait in (5.1, 10.1, 20.1):  # each re-send waits twice as long as the one before
        clock.now += wait
        await orch.fire_timers(pool)
    await reply("payment.refunded")
    await reply("payment.refunded")  # a duplicate changes nothing
    await reply("inventory.released")
    await reply("order.cancelled")
    sent = [t for t, _ in await commands(pool)]
    assert sent == [
        "inventory.reserve",
        "payment.process",
        "payment.process",
        "payment.process",
        "payment.refund",
        "inventory.release",
        "order.cancel",
    ]
    async with pool.acquire() as conn:
        state = await store.load(conn, saga_id)
        log = await conn.fetch("SELECT status, event FROM saga_log WHERE saga_id = $1", saga_id)
    assert state is not None and state.status == "FAILED"
    assert state.reason == "take_payment timed out"
    assert [r["event"] for r in log][-1] == "order.cancelled"
    await pool.close()


async def test_stale_writes_conflict(fresh_db: str) -> None:
    orch = Orchestrator([RESERVE_FIRST], clock=Clock())
    pool = await asyncpg.create_pool(fresh_db, min_size=1, max_size=2)
    [saga_id] = await start_sagas(pool, orch, 1)
    async with pool.acquire() as conn:
        state = await store.load(conn, saga_id)
        assert state is not None
        entry = store.LogEntry("reserve_stock", "test", "", [])
        await store.save(conn, state.evolve(reason="first"), entry)
        with pytest.raises(ConcurrencyConflict):
            await store.save(conn, state.evolve(reason="second"), entry)
    await pool.close()


async def test_a_saga_that_cannot_be_processed_is_parked_and_the_rest_go_on(
    fresh_db: str,
) -> None:
    """A deploy dropped a step one saga is at: its timer and its replies park it (with the
    reason, in its log); every other saga's timer still fires, and nothing loops."""
    clock = Clock()
    orch = Orchestrator([RESERVE_FIRST], clock=clock)
    pool = await asyncpg.create_pool(fresh_db, min_size=1, max_size=2)
    ids = await start_sagas(pool, orch, 5)
    broken, *healthy = ids
    await pool.execute("UPDATE sagas SET step = 99 WHERE saga_id = $1", broken)
    clock.now += RESERVE_FIRST.steps[1].timeout + 0.1
    assert await orch.fire_timers(pool) == 5
    assert await orch.fire_timers(pool) == 0, "the parked saga's timer stopped"
    resent = [k for t, k in (await commands(pool))[5:]]
    assert sorted(resent) == sorted(healthy)
    row = await pool.fetchrow("SELECT parked, due_at FROM sagas WHERE saga_id = $1", broken)
    assert "step #99, which order lacks" in row["parked"] and row["due_at"] is None
    env = new_message("inventory.reserved", {"order_id": broken}, key=broken)
    async with pool.acquire() as conn, conn.transaction():
        await orch.on_reply(MessageContext(env, conn, "orchestrator"), env.payload)
    events = await pool.fetch(
        "SELECT event, note FROM saga_log WHERE saga_id = $1 ORDER BY id", broken
    )
    assert [(e["event"], e["note"]) for e in events][1:] == [
        ("parked", row["parked"]),
        ("inventory.reserved", "ignored: parked"),
    ]

    await pool.execute("UPDATE sagas SET step = 1 WHERE saga_id = $1", broken)  # the fix
    async with pool.acquire() as conn, conn.transaction():
        assert await orch.resume(conn, broken)
        assert not await orch.resume(conn, broken), "resumed already"
    assert (await commands(pool))[-1] == ("inventory.reserve", broken)
    row = await pool.fetchrow("SELECT parked, attempt FROM sagas WHERE saga_id = $1", broken)
    assert row["parked"] is None and row["attempt"] == 2, "a new attempt: a new message id"
    await pool.close()


async def test_a_saga_whose_definition_is_not_hosted_is_parked_and_the_rest_go_on(
    fresh_db: str,
) -> None:
    """A deploy dropped (or renamed) a definition with sagas in flight: its sagas are set
    aside with the reason, where an operator sees them; the other sagas' timers fire."""
    clock = Clock()
    orch = Orchestrator([RESERVE_FIRST], clock=clock)
    other = Orchestrator(
        [replace(RESERVE_FIRST, name="other", starts_on="other.start")], clock=clock
    )
    pool = await asyncpg.create_pool(fresh_db, min_size=1, max_size=2)
    orphan, healthy = await start_sagas(pool, orch, 2)
    await pool.execute("UPDATE sagas SET definition = 'gone' WHERE saga_id = $1", orphan)
    clock.now += RESERVE_FIRST.steps[1].timeout + 0.1
    assert await orch.fire_timers(pool) == 2
    row = await pool.fetchrow("SELECT parked, due_at FROM sagas WHERE saga_id = $1", orphan)
    assert "'gone' v1 is not hosted" in row["parked"] and row["due_at"] is None
    assert [k for _, k in (await commands(pool))[2:]] == [healthy]
    env = new_message("inventory.reserved", {"order_id": healthy}, key=healthy)
    async with pool.acquire() as conn, conn.transaction():
        await other.on_reply(MessageContext(env, conn, "other"), env.payload)
    parked = await pool.fetchval("SELECT parked FROM sagas WHERE saga_id = $1", healthy)
    assert parked == (
        "inventory.reserved: saga definition 'order' v1 is not hosted here (versions hosted: none)"
    )
    await pool.close()


async def test_a_second_start_with_other_data_is_noted_and_ignored(fresh_db: str) -> None:
    orch = Orchestrator([RESERVE_FIRST], clock=Clock())
    pool = await asyncpg.create_pool(fresh_db, min_size=1, max_size=2)
    [saga_id] = await start_sagas(pool, orch, 1)
    await start_sagas(pool, orch, 1)  # the same start again: a duplicate, nothing noted
    env = new_message("order.created", {"order_id": saga_id, "qty": 2}, key=saga_id)
    async with pool.acquire() as conn, conn.transaction():
        await orch.on_start(MessageContext(env, conn, "orchestrator"), env.payload)
    log = await pool.fetch("SELECT event, note FROM saga_log WHERE saga_id = $1", saga_id)
    assert [(e["event"], e["note"]) for e in log][1:] == [  # the duplicate left no line
        ("order.created", "ignored: other start data")
    ]
    data = await pool.fetchval("SELECT data FROM sagas WHERE saga_id = $1", saga_id)
    assert "qty" not in data
    await pool.close()


async def test_finished_sagas_and_their_log_are_pruned_in_batches(fresh_db: str) -> None:
    orch = Orchestrator([RESERVE_FIRST], clock=Clock())
    pool = await asyncpg.create_pool(fresh_db, min_size=1, max_size=2)
    ids = await start_sagas(pool, orch, 7)
    await pool.execute(
        "UPDATE sagas SET status = 'COMPLETED', updated_at = now() - interval '2 days'"
        " WHERE saga_id = ANY($1)",
        ids[:5],
    )
    await pool.execute(  # several lines each
        "INSERT INTO saga_log (saga_id, version, status, step, event, note, commands)"
        " SELECT saga_id, version, status, step, event, note, commands FROM saga_log"
    )
    async with pool.acquire() as conn:
        assert await store.prune(conn, timedelta(days=1), 3) == 3
        assert await store.prune(conn, timedelta(days=1), 3) == 2
        assert await store.prune(conn, timedelta(days=1), 3) == 0
    left = await pool.fetch("SELECT DISTINCT saga_id FROM saga_log")
    assert sorted(r["saga_id"] for r in left) == sorted(ids[5:])
    assert await pool.fetchval("SELECT count(*) FROM sagas") == 2
    await pool.close()


def test_a_malformed_start_or_reply_never_reaches_the_engine() -> None:
    """A start message that no participant could act on would start a saga that never
    ends; with the definition's models, the runtime dead-letters it instead."""
    from sagakit.errors import MessageError
    from sagakit.saga.definition import check_payload

    router = Orchestrator([RESERVE_FIRST]).router()
    start = new_message("order.created", {}, key="k")
    with pytest.raises(MessageError):
        router.route(start).parse(start)
    with pytest.raises(MessageError):
        check_payload(RESERVE_FIRST, "inventory.reserved", {"amount_cents": -5})
    check_payload(RESERVE_FIRST, "inventory.reserved", {"order_id": "k", "amount_cents": 5})


async def test_a_deploy_keeps_running_sagas_on_their_version(fresh_db: str) -> None:
    """v1 sagas in flight when v2 is deployed finish on v1 (the process hosts both); new
    sagas start on v2; a saga of a version no longer hosted is parked with the reason, and
    the others' timers still fire."""
    clock = Clock()
    v1 = Orchestrator([RESERVE_FIRST], clock=clock)
    pool = await asyncpg.create_pool(fresh_db, min_size=1, max_size=2)
    old, dropped = await start_sagas(pool, v1, 2)
    await pool.execute("UPDATE sagas SET definition_version = 7 WHERE saga_id = $1", dropped)
    v2_def = replace(RESERVE_FIRST, version=2, deadline=99.0)
    both = Orchestrator([RESERVE_FIRST, v2_def], clock=clock)
    env = new_message("order.created", {"order_id": "new"}, key="new")
    async with pool.acquire() as conn, conn.transaction():
        ctx = MessageContext(env, conn, "orchestrator")
        await both.on_start(ctx, env.payload)
        await ctx.flush()
    versions = dict(await pool.fetch("SELECT saga_id, definition_version FROM sagas"))
    assert versions == {old: 1, dropped: 7, "new": 2}
    clock.now += RESERVE_FIRST.steps[1].timeout + 0.1
    assert await both.fire_timers(pool) == 3
    row = await pool.fetchrow("SELECT parked, due_at FROM sagas WHERE saga_id = $1", dropped)
    assert "'order' v7 is not hosted here (versions hosted: v1, v2)" in row["parked"]
    resent = sorted(k for t, k in await commands(pool) if t == "inventory.reserve")
    assert resent == sorted([old, old, dropped, "new", "new"]), "first sends, then re-sends"
    await pool.close()


async def test_a_compensation_out_of_attempts_waits_for_an_operator(fresh_db: str) -> None:
    """A compensation nobody acknowledges is sent within its budget, then the saga stops in
    COMPENSATION_FAILED (no timer, counted); an operator retries it or resolves it with a
    note, each recorded in its log with who did it."""
    clock = Clock()
    orch = Orchestrator([RESERVE_FIRST], clock=clock)
    pool = await asyncpg.create_pool(fresh_db, min_size=1, max_size=2)
    stuck, other = await start_sagas(pool, orch, 2)
    for saga_id in (stuck, other):
        env = new_message("inventory.failed", {"order_id": saga_id, "reason": "none"}, key=saga_id)
        async with pool.acquire() as conn, conn.transaction():
            ctx = MessageContext(env, conn, "orchestrator")
            await orch.on_reply(ctx, env.payload)
            await ctx.flush()
    budget = RESERVE_FIRST.steps[0].compensation_attempts
    for _ in range(budget):
        clock.now += 1000
        await orch.fire_timers(pool)
    rows = dict(await pool.fetch("SELECT saga_id, status FROM sagas"))
    assert rows == {stuck: "COMPENSATION_FAILED", other: "COMPENSATION_FAILED"}
    cancels = [k for t, k in await commands(pool) if t == "order.cancel"]
    assert cancels.count(stuck) == budget
    assert await pool.fetchval("SELECT count(*) FROM sagas WHERE due_at IS NOT NULL") == 0
    async with pool.acquire() as conn, conn.transaction():
        assert await orch.retry(conn, stuck, by="ada")
        assert not await orch.retry(conn, stuck, by="ada"), "compensating again"
        assert await orch.resolve(conn, other, "cancelled by phone", by="bob")
    assert (await commands(pool))[-1] == ("order.cancel", stuck)
    log = await pool.fetch(
        "SELECT saga_id, status, event, note FROM saga_log WHERE event LIKE '%by%' ORDER BY id"
    )
    assert [(r["saga_id"], r["status"], r["event"]) for r in log] == [
        (stuck, "COMPENSATING", "retried by ada"),
        (other, "FAILED", "resolved by bob: cancelled by phone"),
    ]
    assert "cancelled by phone" in log[1]["note"]
    await pool.close()


async def test_sagas_whose_timers_are_long_overdue_are_counted_stuck(fresh_db: str) -> None:
    from sagakit.orchestration import GAUGES

    orch = Orchestrator([RESERVE_FIRST], clock=Clock())  # timers set in 1970: long overdue
    pool = await asyncpg.create_pool(fresh_db, min_size=1, max_size=2)
    ids = await start_sagas(pool, orch, 3)
    stuck = GAUGES["sagakit_sagas_stuck"]
    assert await pool.fetchval(stuck) == 3
    async with pool.acquire() as conn:
        await store.park(conn, ids[0], "reserve_stock", "parked: counted there instead")
        await conn.execute(
            "UPDATE sagas SET due_at = extract(epoch FROM now()) + 5 WHERE saga_id = $1", ids[1]
        )
    assert await pool.fetchval(stuck) == 1
    await pool.close()


async def test_what_a_timer_sends_continues_the_saga_trace(fresh_db: str) -> None:
    """A saga keeps the trace context it started in; the commands its timers send carry
    that trace on (a span of it), as the commands its replies cause do."""
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    from sagakit.messaging.codec import unpack_headers

    clock = Clock()
    orch = Orchestrator([RESERVE_FIRST], clock=clock)
    pool = await asyncpg.create_pool(fresh_db, min_size=1, max_size=2)
    started = SpanContext(0xABC, 0xDEF, is_remote=False, trace_flags=TraceFlags(1))
    with trace.use_span(NonRecordingSpan(started)):  # the start's span, as a handler has it
        [saga_id] = await start_sagas(pool, orch, 1)
    await pool.execute("DELETE FROM sagakit_outbox")
    clock.now += 5.1
    assert await orch.fire_timers(pool) == 1  # inventory.reserve is sent again
    rows = await pool.fetch("SELECT key, headers FROM sagakit_outbox")
    assert [r["key"].decode() for r in rows] == [saga_id]
    headers = dict(unpack_headers(rows[0]["headers"]))
    assert headers["traceparent"].split(b"-")[1] == f"{0xABC:032x}".encode()
    await pool.close()
