"""Choreography from a definition, on real PostgreSQL: three followers (two participants and
the tracker), each with its own database, apply one saga's event stream in order (the topic
partition is played by a list here); their copies agree, each command runs once where it is
handled, timers and operators act through events, a version a follower lacks is parked."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg
import pytest

from sagakit.choreography import Choreographer, Participation
from sagakit.db import MigrationSet, migrate
from sagakit.dev import database_url
from sagakit.devstack import StackInfo
from sagakit.messaging import Envelope, MessageContext, codec
from sagakit.messaging.codec import unpack_headers
from sagakit.orchestration import store
from sagakit.saga import Action, SagaDefinition, Step

SAGAS = MigrationSet.from_package("orchestrator", "sagakit.orchestration")
MESSAGING = MigrationSet.from_package("messaging", "sagakit.messaging")

DEAL = SagaDefinition(
    "deal",
    (
        Step(
            "a",
            Action("a.do", "a.done"),
            failure=("a.no",),
            compensation=Action("a.undo", "a.undone", failure=("a.stuck",)),
            compensation_attempts=2,
        ),
        Step("b", Action("b.do", "b.done"), failure=("b.no",), timeout=1.0, max_attempts=2),
    ),
    deadline=1e12,  # the timers below are far in the future
)


@dataclass
class Follower:
    name: str
    pool: asyncpg.Pool
    choreo: Choreographer
    calls: list[tuple[str, int]] = field(default_factory=list)

    async def state(self, saga_id: str) -> dict[str, Any] | None:
        row = await self.pool.fetchrow(
            "SELECT status, step, members, data, parked FROM sagas WHERE saga_id = $1", saga_id
        )
        if row is None:
            return None
        return {**dict(row), "members": json.loads(row["members"]), "data": json.loads(row["data"])}


@pytest.fixture
async def databases(stack: StackInfo) -> AsyncIterator[Callable[[], Any]]:
    made: list[str] = []
    admin = await asyncpg.connect(stack.database_url)

    async def make() -> asyncpg.Pool:
        name = f"t_{uuid.uuid4().hex[:12]}"
        await admin.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        pool = await asyncpg.create_pool(
            database_url(stack.database_url, name), min_size=1, max_size=2
        )
        async with pool.acquire() as conn:
            await migrate(conn, MESSAGING, SAGAS)
        return pool

    try:
        yield make
    finally:
        for name in made:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def participant(name: str, answers: dict[str, list[str]]) -> tuple[dict[str, Participation], list]:
    """Handlers answering each command with the next scripted reply (or none: silence)."""
    calls: list[tuple[str, int]] = []

    def handler(command: str) -> Any:
        async def handle(ctx: MessageContext, payload: Any) -> None:
            calls.append((command, len([c for c in calls if c[0] == command]) + 1))
            script = answers.get(command, [])
            if script:
                reply = script.pop(0)
                if reply:
                    await ctx.reply(reply, {"reason": f"{name} said {reply}"})

        return handle

    commands = [c for c in DEAL.command_types if c.startswith(f"{name}.")]
    return {c: Participation(handler(c), None, None) for c in commands}, calls


async def setup(
    databases: Callable[[], Any],
    answers: dict[str, list[str]],
    *,
    b_versions: tuple[int, ...] = (1,),
) -> list[Follower]:
    out = []
    for name in ("a", "b", "tracker"):
        handlers, calls = participant(name, answers) if name != "tracker" else ({}, [])
        defs = [DEAL] if name != "b" else [replace(DEAL, version=v) for v in b_versions]
        choreo = Choreographer(defs, handlers)
        out.append(Follower(name, await databases(), choreo, calls))
    return out


async def play(followers: list[Follower], stream: list[Envelope], start: int = 0) -> int:
    """Deliver the stream from ``start`` to every follower in order, appending what they
    publish (one partition: one order for all); the position reached."""
    i = start
    while i < len(stream):
        env = stream[i]
        for f in followers:
            async with f.pool.acquire() as conn, conn.transaction():
                ctx = MessageContext(env, conn, f.name)
                await f.choreo.on_event(ctx, env.payload)
                stream += ctx.outgoing
        i += 1
    return i


async def begin(f: Follower, saga_id: str, version: int = 1) -> Envelope:
    async with f.pool.acquire() as conn, conn.transaction():
        await f.choreo.begin(conn, replace(DEAL, version=version), saga_id, {"item": "x"})
        row = await conn.fetchrow("DELETE FROM sagakit_outbox RETURNING *")
    return _envelope(row)


def _envelope(row: asyncpg.Record) -> Envelope:
    """An outbox row as the consumer would read it from the broker."""
    return codec.decode(row["topic"], row["key"], row["value"], unpack_headers(row["headers"]))


async def test_every_copy_agrees_and_each_command_runs_once_where_it_is_handled(
    databases: Callable[[], Any],
) -> None:
    followers = await setup(
        databases, {"a.do": ["a.done"], "b.do": ["b.no"], "a.undo": ["a.undone"]}
    )
    stream = [await begin(followers[2], "s1")]
    await play(followers, stream)
    assert [e.type for e in stream] == ["deal.start", "a.done", "b.no", "a.undone"]
    a, b, tracker = followers
    assert a.calls == [("a.do", 1), ("a.undo", 1)] and b.calls == [("b.do", 1)]
    states = [await f.state("s1") for f in followers]
    assert states[0] == states[1] == states[2]
    assert states[0] is not None and states[0]["status"] == "FAILED"
    timeline = await tracker.pool.fetch(
        "SELECT event FROM saga_log WHERE saga_id = 's1' ORDER BY id"
    )
    assert [r["event"] for r in timeline] == ["start", "a.done", "b.no", "a.undone"]


async def test_timers_and_operators_act_through_events(databases: Callable[[], Any]) -> None:
    """b never answers: the tracker's timer events make every copy re-send, then turn back;
    a's compensation fails twice (its budget): COMPENSATION_FAILED everywhere; the operator's
    retry is an event too, and the saga ends."""
    answers = {"a.do": ["a.done"], "a.undo": ["a.stuck", "a.stuck", "a.undone"]}
    followers = await setup(databases, answers)
    a, b, tracker = followers
    stream = [await begin(tracker, "s2")]
    pos = await play(followers, stream)
    for now in (1e10, 1e10 + 100):  # b.do re-sent once, then given up on
        assert await tracker.choreo.announce_timers(tracker.pool, now=now) == 1, (
            now,
            await tracker.state("s2"),
            b.calls,
        )
        assert await tracker.choreo.announce_timers(tracker.pool, now=now) == 0, "once"
        async with tracker.pool.acquire() as conn:
            stream.append(_envelope(await conn.fetchrow("DELETE FROM sagakit_outbox RETURNING *")))
        pos = await play(followers, stream, pos)
    assert b.calls == [("b.do", 1), ("b.do", 2)]
    states = [await f.state("s2") for f in followers]
    assert all(s is not None and s["status"] == "COMPENSATION_FAILED" for s in states), states
    async with tracker.pool.acquire() as conn, conn.transaction():
        assert await tracker.choreo.operate(conn, "s2", "retry", by="ada")
        stream.append(_envelope(await conn.fetchrow("DELETE FROM sagakit_outbox RETURNING *")))
    await play(followers, stream, pos)
    assert a.calls[-1] == ("a.undo", 3)
    assert {(await f.state("s2") or {}).get("status") for f in followers} == {"FAILED"}
    events = [
        r["event"]
        for r in await tracker.pool.fetch(
            "SELECT event FROM saga_log WHERE saga_id = 's2' ORDER BY id"
        )
    ]
    assert "retried by ada" in events and events.count("timer") == 2


async def test_a_version_a_follower_lacks_is_held_there_until_it_is_deployed(
    databases: Callable[[], Any],
) -> None:
    followers = await setup(databases, {"a.do": ["a.done"], "b.do": ["b.done"]}, b_versions=(2,))
    stream = [await begin(followers[2], "s3", version=1)]
    await play(followers, stream)
    a, b, tracker = followers
    b_state = await b.state("s3")
    assert b_state is not None and "v1 is not hosted" in (b_state["parked"] or ""), b_state
    assert b.calls == []
    assert (await tracker.state("s3") or {})["members"]["b"]["progress"] == "sent"
    assert await b.pool.fetchval("SELECT count(*) FROM saga_held_events") == 2, "start, a.done"
    # v1 is deployed at b; the operator resumes the saga, which is not parked at the
    # tracker: a rejoin, which only b acts on. b applies what it held, in order, runs b.do
    # late, and every copy ends alike; nothing is sent again elsewhere.
    b.choreo = Choreographer([replace(DEAL, version=v) for v in (1, 2)], b.choreo.handlers)
    async with tracker.pool.acquire() as conn, conn.transaction():
        assert await tracker.choreo.operate(conn, "s3", "resume", by="ada")
        stream.append(_envelope(await conn.fetchrow("DELETE FROM sagakit_outbox RETURNING *")))
    await play(followers, stream, 2)
    assert stream[2].type == "sagakit.deal.rejoin"
    assert b.calls == [("b.do", 1)] and a.calls == [("a.do", 1)]
    states = [await f.state("s3") for f in followers]
    assert states[0] == states[1] == states[2], states
    assert states[0] is not None and states[0]["status"] == "COMPLETED"
    assert states[1] is not None and states[1]["parked"] is None
    assert await b.pool.fetchval("SELECT count(*) FROM saga_held_events") == 0


async def test_copies_parked_alike_are_taken_back_alike(databases: Callable[[], Any]) -> None:
    """A saga every copy set aside at the same event (a deterministic failure of the engine
    on it, simulated here) ignores what follows, everywhere; the operator's resume is an
    event every copy applies: each takes the saga back and re-sends what is in flight."""
    followers = await setup(databases, {"a.do": ["", "a.done"], "b.do": ["b.done"]})
    a, b, tracker = followers
    stream = [await begin(tracker, "s4")]
    pos = await play(followers, stream)
    for f in followers:
        async with f.pool.acquire() as conn:
            await store.park(conn, "s4", "a", "the engine could not take it")
    async with tracker.pool.acquire() as conn, conn.transaction():
        assert await tracker.choreo.operate(conn, "s4", "resume", by="ada")
        stream.append(_envelope(await conn.fetchrow("DELETE FROM sagakit_outbox RETURNING *")))
    await play(followers, stream, pos)
    assert a.calls == [("a.do", 1), ("a.do", 2)] and b.calls == [("b.do", 1)]
    states = [await f.state("s4") for f in followers]
    assert states[0] == states[1] == states[2]
    assert states[0] is not None and states[0]["status"] == "COMPLETED"
    events = await tracker.pool.fetch("SELECT event FROM saga_log WHERE saga_id = 's4'")
    assert "resumed by ada" in [r["event"] for r in events]


async def test_a_handler_that_deadlocks_is_tried_again_in_the_event(
    databases: Callable[[], Any],
) -> None:
    """A retriable failure (a deadlock, a serialization failure) is tried again at once,
    as the consumer runtime would, instead of costing the step an attempt."""
    followers = await setup(databases, {"b.do": ["b.done"]})
    a, _, tracker = followers
    tries = []

    async def flaky(ctx: MessageContext, payload: Any) -> None:
        tries.append(1)
        if len(tries) == 1:
            raise asyncpg.DeadlockDetectedError("deadlock detected")
        await ctx.reply("a.done", {})

    a.choreo.handlers["a.do"] = Participation(flaky, None, None)
    stream = [await begin(tracker, "s5")]
    await play(followers, stream)
    assert len(tries) == 2
    assert {(await f.state("s5") or {}).get("status") for f in followers} == {"COMPLETED"}
    notes = await a.pool.fetch("SELECT note FROM saga_log WHERE saga_id = 's5'")
    assert not any("failed" in (r["note"] or "") for r in notes), notes


async def test_a_timer_of_a_version_the_tracker_lacks_parks_its_saga(
    databases: Callable[[], Any],
) -> None:
    """As the orchestrator does: set aside with the reason, instead of a timer that never
    fires."""
    followers = await setup(databases, {"a.do": ["a.done"]})
    tracker = followers[2]
    stream = [await begin(tracker, "s6")]
    await play(followers, stream)
    tracker.choreo = Choreographer([replace(DEAL, version=2)], {})
    assert await tracker.choreo.announce_timers(tracker.pool, now=1e12) == 1
    parked = (await tracker.state("s6") or {}).get("parked") or ""
    assert "v1 is not hosted" in parked, parked
    assert await tracker.choreo.announce_timers(tracker.pool, now=1e12 + 100) == 0
    # Events go on while the tracker lacks the version: it holds them, and once v1 is back
    # the operator's resume has it apply them in order, ending as every other copy did.
    a = followers[0]
    a.choreo.handlers["a.undo"] = a.choreo.handlers["a.do"]  # (any answer will do)
    stream.append(tracker.choreo.event(DEAL, "b.done", "s6", {}, message_id=uuid.uuid4()))
    pos = await play(followers, stream, len(stream) - 1)
    assert (await tracker.state("s6") or {})["status"] == "RUNNING"
    assert {(await f.state("s6") or {}).get("status") for f in followers[:2]} == {"COMPLETED"}
    tracker.choreo = Choreographer([DEAL], {})
    async with tracker.pool.acquire() as conn, conn.transaction():
        assert await tracker.choreo.operate(conn, "s6", "resume", by="ada")
        stream.append(_envelope(await conn.fetchrow("DELETE FROM sagakit_outbox RETURNING *")))
    await play(followers, stream, pos)
    states = [await f.state("s6") for f in followers]
    assert states[0] == states[1] == states[2], states


async def test_operator_tools_follow_the_mode_the_service_recorded(
    databases: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sagakit import Mode, SagakitError, Service
    from sagakit.cli import _saga_mode

    pool = await databases()
    svc = Service("tracker", orchestrates=[DEAL])
    monkeypatch.delenv("SAGAKIT_MODE", raising=False)
    async with pool.acquire() as conn:
        assert await _saga_mode(conn, svc) is Mode.ORCHESTRATION  # never started: the default
        await store.record_mode(conn, "choreography")
        assert await _saga_mode(conn, svc) is Mode.CHOREOGRAPHY
        monkeypatch.setenv("SAGAKIT_MODE", "orchestration")
        with pytest.raises(SagakitError, match="runs its sagas in choreography mode"):
            await _saga_mode(conn, svc)
