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
from dataclasses import dataclass
from typing import Any

import asyncpg
from pydantic import BaseModel

from sagakit.aio import repeat
from sagakit.db import Connection, transaction
from sagakit.errors import MessageError
from sagakit.messaging import Envelope, MessageContext, Router, derived_id, new_message, outbox
from sagakit.messaging.retry import Disposition, classify
from sagakit.orchestration import store
from sagakit.saga import (
    Command,
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
from sagakit.saga.definition import check_payload, newest
from sagakit.saga.engine import Event
from sagakit.topics import topic_name

log = logging.getLogger(__name__)

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


def event_types(d: SagaDefinition) -> tuple[str, ...]:
    """Every event type on a definition's topic."""
    return (d.starts_on, *d.reply_types, timer_type(d), resumed_type(d), resolved_type(d))


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
        saga_id = env.key
        named = self.latest.get(env.headers.get(DEFINITION, ""))
        if named is None:
            named = self.by_topic.get(env.topic)
        if named is None:
            raise MessageError(f"{env.type}: no saga definition hosted here for {env.topic}")
        now = env.created_at.timestamp()
        state = await store.load(ctx.tx, saga_id, lock=True)
        if env.type == named.starts_on:
            if state is not None:
                return  # the same start again
            version = int(env.headers.get(VERSION) or named.version)
            found = self.definitions.get((named.name, version))
            if found is None:
                await self._park_unhosted(ctx.tx, saga_id, named.name, version, env, now)
                return
            definition = found
            _check(definition, env.type, env.payload)
            decision = start(definition, Started(saga_id, dict(env.payload), now))
            saved = await store.insert(
                ctx.tx, decision.state, store.entry(definition, decision, "start")
            )
            if saved is None:
                return
        else:
            if state is None:
                log.warning("%s for saga %s, which this service never saw start", env.type, saga_id)
                return
            if await store.parked_reason(ctx.tx, saga_id) is not None:
                await store.note(ctx.tx, saga_id, f"#{state.step}", env.type, "ignored: parked")
                return
            found = self.definitions.get((state.definition, state.definition_version))
            if found is None:
                why = (
                    f"{env.type}: saga definition {state.definition!r}"
                    f" v{state.definition_version} is not hosted here"
                )
                await store.park(ctx.tx, saga_id, f"#{state.step}", why)
                return
            definition = found
            try:
                decision = decide(definition, state, _event(definition, env, now))
            except Exception as exc:  # the engine cannot take this saga: set it aside
                await store.park(ctx.tx, saga_id, definition.stage_name(state.step), repr(exc))
                return
            if not decision.changed:
                return
            what = _what(definition, env)
            saved = await store.save(
                ctx.tx, decision.state, store.entry(definition, decision, what)
            )
        for command in decision.commands:
            if command.type in self.handlers:
                await self._run(ctx, definition, saved, command)

    async def _park_unhosted(
        self, tx: Connection, saga_id: str, name: str, version: int, env: Envelope, now: float
    ) -> None:
        """A saga of a version not hosted here: kept, set aside with the reason."""
        state = SagaState(
            saga_id,
            name,
            SagaStatus.RUNNING,
            step=0,
            data=dict(env.payload),
            started_at=now,
            definition_version=version,
        )
        entry = store.LogEntry("#0", "start", "", [])
        if await store.insert(tx, state, entry) is not None:
            why = f"saga definition {name!r} v{version} is not hosted here"
            await store.park(tx, saga_id, "#0", why)

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
        try:
            async with ctx.tx.transaction():
                body = part.model.model_validate(command.payload) if part.model else command.payload
                await part.handler(inner, body)
        except Exception as exc:
            if classify(exc) is not Disposition.PERMANENT:
                raise  # the whole event is tried again
            log.error("saga %s: %s failed: %r", state.saga_id, command.type, exc)
            await store.note(ctx.tx, state.saga_id, command.step, command.type, f"failed: {exc!r}")
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
                if d is None:
                    continue
                at = max(now, row["due_at"])
                out.append(self.event(d, timer_type(d), row["saga_id"], {"at": at}))
            await outbox.add(conn, *out)
            await store.timer_announced(conn, [r["saga_id"] for r in rows], now)
        return len(rows)

    async def run_timers(
        self, pool: asyncpg.Pool, stop: asyncio.Event, *, interval: float = 0.2
    ) -> None:
        await repeat(lambda: self.announce_timers(pool), stop, interval=interval, what="timer")

    async def begin(self, tx: Connection, d: SagaDefinition, saga_id: str, data: Any) -> None:
        """Start a saga: its start event, written to the outbox in ``tx``."""
        await outbox.add(
            tx,
            self.event(d, d.starts_on, saga_id, data, message_id=derived_id(saga_id, d.starts_on)),
        )

    async def operate(self, tx: Connection, saga_id: str, resolve: str | None, *, by: str) -> bool:
        """An operator's retry (``resolve`` None) or resolution of a saga in
        ``COMPENSATION_FAILED``, as an event every copy applies. False if the saga is not in
        that state here."""
        state = await store.load(tx, saga_id)
        d = self.definitions.get((state.definition, state.definition_version)) if state else None
        if state is None or d is None or state.status.value != "COMPENSATION_FAILED":
            return False
        if resolve is None:
            message = self.event(d, resumed_type(d), saga_id, {"by": by})
        else:
            message = self.event(d, resolved_type(d), saga_id, {"by": by, "note": resolve})
        await outbox.add(tx, message)
        return True


def _event(d: SagaDefinition, env: Envelope, now: float) -> Event:
    if env.type == timer_type(d):
        return TimedOut(float(env.payload.get("at", now)))
    if env.type == resumed_type(d):
        return Resumed(now)
    if env.type == resolved_type(d):
        return Resolved(str(env.payload.get("note", "")), now)
    _check(d, env.type, env.payload)
    return Replied(env.type, env.payload, now)


def _what(d: SagaDefinition, env: Envelope) -> str:
    """The event as the saga's timeline names it."""
    by = env.payload.get("by", "an operator")
    if env.type == resumed_type(d):
        return f"retried by {by}"
    if env.type == resolved_type(d):
        return f"resolved by {by}"
    return "timer" if env.type == timer_type(d) else env.type


def _check(d: SagaDefinition, type: str, payload: Mapping[str, Any]) -> None:
    """A start or reply that does not fit its model: dead-lettered by every follower alike."""
    try:
        check_payload(d, type, payload)
    except ValueError as exc:
        raise MessageError(str(exc)) from None


__all__ = ["Choreographer", "Participation", "event_types", "saga_topic"]
