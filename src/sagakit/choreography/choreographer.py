"""Choreography from the same definitions: no orchestrator sends commands. Every event of a
saga (its start, each reply, a timer, an operator's decision) goes to one topic per
definition, keyed by the saga id, so each saga's events are in one total order. Every
service taking part follows that stream and applies each event, with the pure engine, to its
own copy of the saga's state (in its own database); the engine decides the same commands
everywhere, and each service runs the ones it handles, inside the transaction that records
the event. Its handler's reply is published to the same stream, for everyone.

Time comes from the events (when each was written), never from a local clock, so every copy
decides alike. The tracker (the service that ``orchestrates`` the definition, in this mode)
follows the stream too, keeps the timeline, answers ``GET /sagas``, and publishes a timer
event when a saga's timer is due: applied in stream order, it re-sends or compensates exactly
as the orchestrator would.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
from pydantic import BaseModel

from sagakit import metrics, tracing
from sagakit.aio import repeat
from sagakit.db import Connection, transaction
from sagakit.errors import MessageError
from sagakit.messaging import Envelope, MessageContext, Router, derived_id, new_message, outbox
from sagakit.messaging.retry import Disposition, classify
from sagakit.orchestration import store
from sagakit.orchestration.orchestrator import OPERATED, operator_label
from sagakit.saga import (
    Cancelled,
    Command,
    Decision,
    Replied,
    Resolved,
    Resumed,
    SagaDefinition,
    SagaState,
    SagaStatus,
    Started,
    TimedOut,
    decide,
    start,
)
from sagakit.saga.definition import check_payload, hosted, newest
from sagakit.saga.engine import Event
from sagakit.topics import topic_name

log = logging.getLogger(__name__)

HANDLER_TRIES = 3
"""Tries of a handler that lost a lock conflict (a deadlock, a serialization failure), in
the event's transaction, before it counts as not done."""
CONFLICTS = frozenset({"40P01", "40001", "55P03"})
"""Deadlock, serialization failure, lock not available."""

DEFINITION = "sagakit-definition"
VERSION = "sagakit-version"
"""Headers of every saga event: the definition and version it runs on."""


def saga_topic(namespace: str, definition: SagaDefinition) -> str:
    """The one topic carrying every event of ``definition``'s sagas."""
    return topic_name(namespace, f"saga.{definition.name}")


def timer_type(d: SagaDefinition) -> str:
    return f"sagakit.{d.name}.timer"


def resumed_type(d: SagaDefinition) -> str:
    return f"sagakit.{d.name}.resumed"


def resolved_type(d: SagaDefinition) -> str:
    return f"sagakit.{d.name}.resolved"


def cancelled_type(d: SagaDefinition) -> str:
    return f"sagakit.{d.name}.cancelled"


def rejoin_type(d: SagaDefinition) -> str:
    """Wakes a copy that held a saga's events for a version it lacked; no-op elsewhere."""
    return f"sagakit.{d.name}.rejoin"


def event_types(d: SagaDefinition) -> tuple[str, ...]:
    """Every event type on a definition's topic."""
    return (
        d.starts_on,
        *d.reply_types,
        timer_type(d),
        resumed_type(d),
        resolved_type(d),
        cancelled_type(d),
        rejoin_type(d),
    )


@dataclass(frozen=True)
class Participation:
    """A handler of one command, as the service registered it."""

    handler: Any
    model: type[BaseModel] | None
    replies: tuple[str, ...] | None


class Choreographer:
    """One service's part in the choreographed sagas of ``definitions``: it follows their
    topics, keeps its copy of each saga, and runs the commands it has ``handlers`` for."""

    def __init__(
        self,
        definitions: Sequence[SagaDefinition],
        handlers: Mapping[str, Participation],
        *,
        namespace: str = "",
    ) -> None:
        self.definitions = {(d.name, d.version): d for d in definitions}
        self.latest = newest(definitions)
        self.by_topic = {saga_topic(namespace, d): d for d in self.latest.values()}
        self.handlers = dict(handlers)
        self.namespace = namespace

    def router(self) -> Router:
        r = Router(self.namespace)
        for d in self.latest.values():
            topic = saga_topic(self.namespace, d)
            for t in dict.fromkeys(
                t for v in self.definitions.values() if v.name == d.name for t in event_types(v)
            ):
                r.add(t, self.on_event, topic=topic)
        return r

    # -- following the stream ------------------------------------------------------------------
    async def on_event(self, ctx: MessageContext, payload: Any) -> None:
        env = ctx.envelope
        named = self.latest.get(env.headers.get(DEFINITION, "")) or self.by_topic.get(env.topic)
        if named is None:
            raise MessageError(f"{env.type}: no saga definition hosted here for {env.topic}")
        state, parked = await _copy(ctx.tx, env.key)
        if state is not None and parked and await store.holding(ctx.tx, env.key):
            # This copy waits for its definition version: the event is kept, in order; an
            # operator's resume (or rejoin) applies what it holds once the version is here.
            await store.hold(ctx.tx, env)
            if env.type in (resumed_type(named), rejoin_type(named)):
                await self._rejoin(ctx, named)
            else:
                await store.note(ctx.tx, env.key, f"#{state.step}", env.type, "held")
            return
        if env.type != rejoin_type(named):  # (it only wakes a copy that holds events)
            await self._follow(ctx, named, state, parked=parked)

    async def _follow(
        self,
        ctx: MessageContext,
        named: SagaDefinition,
        state: SagaState | None,
        *,
        parked: bool,
    ) -> None:
        """Apply one event of the stream (a start, a reply, a timer, an operator's
        decision) to this copy, and run this service's commands."""
        env = ctx.envelope
        if env.type == named.starts_on:
            await self._on_start(ctx, named, state)
            return
        if state is None:
            log.warning("%s for saga %s, which this service never saw start", env.type, env.key)
            return
        if state.status.terminal:
            return  # nothing changes a finished saga (the engine would say so too)
        try:
            found = hosted(self.definitions, state.definition, state.definition_version)
        except MessageError as exc:
            if not parked:
                await store.park(ctx.tx, env.key, f"#{state.step}", f"{env.type}: {exc}")
            await store.hold(ctx.tx, env)  # applied once the version is hosted again
            return
        if parked and env.type != resumed_type(named):  # only an operator takes it back
            await store.note(ctx.tx, env.key, f"#{state.step}", env.type, "ignored: parked")
            return
        await self._apply(ctx, found, state, env)

    async def _apply(
        self, ctx: MessageContext, found: SagaDefinition, state: SagaState, env: Envelope
    ) -> None:
        """Apply ``env`` to this copy with the engine and run this service's commands."""
        now = env.created_at.timestamp()
        try:
            decision = decide(found, state, _event(found, env, now))
        except MessageError:
            raise
        except Exception as exc:  # the engine cannot take this saga: set it aside
            await store.park(ctx.tx, env.key, found.stage_name(state.step), repr(exc))
            return
        if decision.changed:  # (saving also takes a parked copy back)
            entry = store.entry(found, decision, _what(found, env), env.payload)
            saved = await store.save(ctx.tx, decision.state, entry)
            metrics.step_answered(found, state, env.type, now)
            await self._run_own(ctx, found, saved, decision)
        elif env.type in _operator_types(found):  # the saga moved on since it was asked
            step = found.stage_name(state.step)
            note = f"refused: {decision.note}"
            await store.note(ctx.tx, env.key, step, _what(found, env), note)

    async def _on_start(
        self, ctx: MessageContext, named: SagaDefinition, state: SagaState | None
    ) -> None:
        env = ctx.envelope
        version = int(env.headers.get(VERSION) or named.version)
        now = env.created_at.timestamp()
        try:
            definition = hosted(self.definitions, named.name, version)
        except MessageError as exc:
            if state is None:  # kept, set aside with the reason, its events held
                unhosted = SagaState(
                    env.key,
                    named.name,
                    SagaStatus.RUNNING,
                    step=0,
                    data=dict(env.payload),
                    started_at=now,
                    definition_version=version,
                )
                entry = store.LogEntry("#0", "start", "", [])
                if await store.insert(ctx.tx, unhosted, entry) is not None:
                    await store.park(ctx.tx, env.key, "#0", str(exc))
                    await store.hold(ctx.tx, env)  # (a copy holds only while parked)
            return
        check_payload(definition, env.type, env.payload)
        decision = start(definition, Started(env.key, dict(env.payload), now))
        if state is None:
            entry = store.entry(definition, decision, "start", env.payload)
            saved = await store.insert(ctx.tx, decision.state, entry)
            if saved is not None:
                await self._run_own(ctx, definition, saved, decision)
        elif state.version == 1:
            # Recorded by ``begin`` in this database, with this event's time: the same
            # decision; only its commands are left to run. (A duplicate start is dropped by
            # the inbox before it gets here.)
            await self._run_own(ctx, definition, state, decision)

    async def _rejoin(self, ctx: MessageContext, named: SagaDefinition) -> None:
        """An operator's resume or rejoin reached a copy that holds its saga's events
        because their definition version is not hosted here. If it is now, the copy
        applies every held event in stream order, as it would have, and takes part again:
        its commands then run late, and their replies go to the stream like any other."""
        saga_id = ctx.envelope.key
        held = await store.take_held(ctx.tx, saga_id)
        state = await store.load(ctx.tx, saga_id, lock=True)
        assert state is not None and held
        try:
            hosted(self.definitions, state.definition, state.definition_version)
        except MessageError as exc:
            for env in held:
                await store.hold(ctx.tx, env)
            await store.note(ctx.tx, saga_id, f"#{state.step}", "resume", f"held: {exc}")
            return
        if held[0].type == named.starts_on:
            await store.forget(ctx.tx, saga_id)  # the stand-in kept while unhosted
        else:
            await store.unpark(ctx.tx, saga_id)  # parked only for the version it lacked
        for env in held:
            if env.type == rejoin_type(named):
                continue  # it woke this copy; the others ignore it
            inner = MessageContext(
                env, ctx.tx, ctx.group, namespace=ctx.namespace, outgoing=ctx.outgoing
            )
            try:
                async with ctx.tx.transaction():
                    current, parked = await _copy(ctx.tx, saga_id)
                    await self._follow(inner, named, current, parked=parked)
            except MessageError as exc:  # every other copy dead-lettered it: skipped here
                await store.note(ctx.tx, saga_id, f"#{state.step}", env.type, f"skipped: {exc}")

    async def _run_own(
        self, ctx: MessageContext, d: SagaDefinition, state: SagaState, decision: Decision
    ) -> None:
        for command in decision.commands:
            if command.type in self.handlers:
                await self._run(ctx, d, state, command)

    async def _run(
        self, ctx: MessageContext, d: SagaDefinition, state: SagaState, command: Command
    ) -> None:
        """Run this service's handler of ``command`` in the event's transaction; its reply
        goes to the saga's topic. A handler that fails for good is noted in the saga's
        timeline and does not reply: the step times out, as a lost command would."""
        part = self.handlers[command.type]
        topic = saga_topic(self.namespace, d)
        envelope = new_message(
            command.type,
            command.payload,
            key=state.saga_id,
            topic=topic,
            correlation_id=state.saga_id,
            causation_id=ctx.envelope.message_id,
            headers={**ctx.envelope.headers, DEFINITION: d.name, VERSION: str(d.version)},
            message_id=derived_id(state.saga_id, command.type, command.attempt),
        )
        inner = MessageContext(
            envelope,
            ctx.tx,
            ctx.group,
            namespace=self.namespace,
            replies=part.replies,
            reply_topic=topic,
        )
        for attempt in range(1, HANDLER_TRIES + 1):
            try:
                async with ctx.tx.transaction():
                    model = part.model
                    body = model.model_validate(command.payload) if model else command.payload
                    with tracing.span(f"run {command.type}", attributes={"attempt": attempt}):
                        await part.handler(inner, body)
                break
            except Exception as exc:
                if classify(exc) is Disposition.OUTAGE:
                    raise  # the whole event waits for the database
                if _conflict(exc) and attempt < HANDLER_TRIES:
                    inner.outgoing.clear()  # a deadlock, a serialization failure: again
                    await asyncio.sleep(0.05 * 2**attempt)
                    continue
                # Never the event's fault: every other copy applied it, so it must not be
                # dead-lettered here. The command did not happen; the step times out and
                # the command is sent again, as a lost one would be.
                log.error("saga %s: %s failed: %r", state.saga_id, command.type, exc)
                note = f"failed: {exc!r}"[:500]
                await store.note(ctx.tx, state.saga_id, command.step, command.type, note)
                return
        for message in inner.outgoing:
            ctx.send(message)

    # -- what the tracker adds -----------------------------------------------------------------
    def event(
        self, d: SagaDefinition, type: str, saga_id: str, payload: Mapping[str, Any], **ids: Any
    ) -> Envelope:
        """An event of ``d``'s saga ``saga_id`` on its topic."""
        return new_message(
            type,
            payload,
            key=saga_id,
            topic=saga_topic(self.namespace, d),
            correlation_id=saga_id,
            headers={DEFINITION: d.name, VERSION: str(d.version)},
            **ids,
        )

    async def announce_timers(
        self, pool: asyncpg.Pool, *, now: float | None = None, limit: int = 200
    ) -> int:
        """Publish a timer event for each saga whose timer is due (once per state, again
        after a while if it changed nothing). Its time is the timer's, at the latest: every
        copy of the saga finds it due, whatever the clocks say."""
        now = time.time() if now is None else now
        async with transaction(pool) as conn:
            rows = await store.due_unannounced(conn, now, limit)
            out = []
            for row in rows:
                d = self.definitions.get((row["definition"], row["definition_version"]))
                if d is None:  # set aside with the reason, as the orchestrator would
                    try:
                        hosted(self.definitions, row["definition"], row["definition_version"])
                    except MessageError as exc:
                        await store.park(conn, row["saga_id"], "timer", str(exc))
                    continue
                at = max(now, row["due_at"])
                with tracing.span("timer", parent=store.trace_of(row)):  # the saga's trace
                    timer = self.event(d, timer_type(d), row["saga_id"], {"at": at})
                    out.append(replace(timer, headers=tracing.inject(timer.headers)))
            await outbox.add(conn, *out)
            await store.timer_announced(conn, [r["saga_id"] for r in rows], now)
        return len(rows)

    async def run_timers(
        self, pool: asyncpg.Pool, stop: asyncio.Event, *, interval: float = 0.2
    ) -> None:
        await repeat(lambda: self.announce_timers(pool), stop, interval=interval, what="timer")

    async def begin(
        self, tx: Connection, d: SagaDefinition, saga_id: str, data: Any, *, record: bool = False
    ) -> bool:
        """Start a saga: its start event, written to the outbox in ``tx``. ``record``: this
        database keeps copies (the tracker): the copy is made now, from the event itself,
        so that a retry finds it at once. False if it was recorded before."""
        message = self.event(
            d, d.starts_on, saga_id, data, message_id=derived_id(saga_id, d.starts_on)
        )
        if record:
            decision = start(d, Started(saga_id, dict(data), message.created_at.timestamp()))
            if (
                await store.insert(tx, decision.state, store.entry(d, decision, "start", data))
                is None
            ):
                return False
        await outbox.add(tx, message)
        return True

    async def operate(
        self, tx: Connection, saga_id: str, action: str, *, by: str, note: str = ""
    ) -> bool:
        """An operator's decision as an event every copy applies: ``resume`` a parked saga
        (each copy parked for the same cause is taken back, and what is in flight is sent
        again), ``retry-step`` (send what a saga waits on again now), ``cancel`` a running
        saga (it compensates), ``retry`` or ``resolve`` a saga in ``COMPENSATION_FAILED``.
        A resume of a saga not parked here is a rejoin: only a copy that held the saga's
        events for a definition version it lacked acts on it (it applies them, now that the
        version is deployed). False if this copy is not in the state the action is for."""
        state, parked_for = await store.load_parked(tx, saga_id)
        d = self.latest.get(state.definition) if state else None
        if state is None or d is None:
            return False
        parked = parked_for is not None
        kind = {"resolve": resolved_type(d), "cancel": cancelled_type(d)}.get(
            action, resumed_type(d)
        )
        if action == "resume":
            if not parked:
                kind = rejoin_type(d)  # not parked here; a participant's copy may wait
        elif action in ("retry", "resolve"):
            if state.status is not SagaStatus.COMPENSATION_FAILED:
                return False
        elif action == "retry-step":
            if parked or state.status not in (SagaStatus.RUNNING, SagaStatus.COMPENSATING):
                return False
        elif action == "cancel":
            found = self.definitions.get((state.definition, state.definition_version))
            if parked or found is None:
                return False
            if not decide(found, state, Cancelled(note, time.time())).changed:
                return False  # not running, or past its pivot: every copy would refuse
        else:
            raise ValueError(f"no operator action {action!r}")
        body = {"by": by, "note": note, "action": action}
        await outbox.add(tx, self.event(d, kind, saga_id, body))
        return True


async def _copy(tx: Connection, saga_id: str) -> tuple[SagaState | None, bool]:
    """This service's copy of the saga (locked for the transaction), and whether it is
    parked."""
    state, parked = await store.load_parked(tx, saga_id, lock=True)
    return state, parked is not None


def _conflict(exc: BaseException) -> bool:
    return getattr(exc, "sqlstate", None) in CONFLICTS


def _event(d: SagaDefinition, env: Envelope, now: float) -> Event:
    if env.type == timer_type(d):
        return TimedOut(float(env.payload.get("at", now)))
    if env.type == resumed_type(d):
        return Resumed(now)
    if env.type == resolved_type(d):
        return Resolved(str(env.payload.get("note", "")), now)
    if env.type == cancelled_type(d):
        return Cancelled(str(env.payload.get("note", "")), now)
    check_payload(d, env.type, env.payload)
    return Replied(env.type, env.payload, now)


def _what(d: SagaDefinition, env: Envelope) -> str:
    """The event as the saga's timeline names it."""
    if env.type in _operator_types(d):
        action = str(env.payload.get("action", ""))
        if action not in OPERATED:  # (an event from before actions were named)
            action = "resolve" if env.type == resolved_type(d) else "resume"
        by, note = str(env.payload.get("by", "an operator")), str(env.payload.get("note", ""))
        return operator_label(action, by, note)
    return "timer" if env.type == timer_type(d) else env.type


def _operator_types(d: SagaDefinition) -> tuple[str, ...]:
    return (resumed_type(d), resolved_type(d), cancelled_type(d))


__all__ = ["Choreographer", "Participation", "event_types", "saga_topic"]
