"""The orchestrator runtime: feeds the pure engine from messages and timers, and writes the
new state, its log entry and its commands (outbox) in one transaction."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

import asyncpg
from pydantic import BaseModel

from sagakit.aio import sleep_or_stop
from sagakit.db import Connection, transaction
from sagakit.messaging import Envelope, MessageContext, Router, derived_id, new_message, outbox
from sagakit.messaging.outbox import storable_text
from sagakit.messaging.retry import Disposition, classify
from sagakit.saga import (
    Decision,
    Replied,
    Resumed,
    SagaDefinition,
    SagaState,
    Started,
    TimedOut,
    decide,
    start,
)
from sagakit.services.orchestrator import store
from sagakit.topics import topic_name

log = logging.getLogger(__name__)


class Orchestrator:
    """Runs the sagas of one definition, started by ``starts_on`` messages.

    ``start_model`` and ``reply_model`` validate the start message and every reply before
    the engine sees them: a malformed one is dead-lettered at once instead of starting (or
    steering) a saga whose commands no participant can take."""

    def __init__(
        self,
        definition: SagaDefinition,
        *,
        starts_on: str,
        namespace: str = "",
        clock: Callable[[], float] = time.time,
        start_model: type[BaseModel] | None = None,
        reply_model: type[BaseModel] | None = None,
    ) -> None:
        self.definition = definition
        self.starts_on = starts_on
        self.namespace = namespace
        self.clock = clock
        self.start_model = start_model
        self.reply_model = reply_model

    def router(self) -> Router:
        r = Router(self.namespace)
        r.add(self.starts_on, self.on_start, self.start_model)
        for reply in self.definition.reply_types:
            r.add(reply, self.on_reply, self.reply_model)
        return r

    async def on_start(self, ctx: MessageContext, valid: object) -> None:
        env = ctx.envelope
        payload = env.payload  # validated; the saga keeps every field it was given
        saga_id = env.correlation_id or env.key
        decision = start(self.definition, Started(saga_id, payload, self.clock()))
        saved = await store.insert(ctx.tx, decision.state, self._entry(decision, env.type))
        if saved is not None:  # else: started already (the same order announced twice)
            for message in self._commands(saved, decision, env.message_id):
                ctx.send(message)

    async def on_reply(self, ctx: MessageContext, valid: object) -> None:
        env = ctx.envelope
        payload = env.payload  # validated; its fields flow into the saga's data
        saga_id = env.correlation_id or env.key
        state = await store.load(ctx.tx, saga_id)
        if state is None:
            log.warning("reply %s for unknown saga %s ignored", env.type, saga_id)
            return
        parked = await store.parked_reason(ctx.tx, saga_id)
        if parked is not None:
            # Resuming re-sends the step's command; its participant answers again then.
            log.warning("reply %s for parked saga %s ignored (%s)", env.type, saga_id, parked)
            await store.note(ctx.tx, saga_id, self._step_name(state), env.type, "ignored: parked")
            return
        try:
            decision = decide(self.definition, state, Replied(env.type, payload, self.clock()))
            entry = self._entry(decision, env.type) if decision.changed else None
        except Exception as exc:  # the engine cannot take this saga: set it aside
            await self._park(ctx.tx, state, f"{env.type}: {exc!r}")
            return
        if entry is not None:
            saved = await store.save(ctx.tx, decision.state, entry)
            for message in self._commands(saved, decision, env.message_id):
                ctx.send(message)

    async def fire_timers(self, pool: asyncpg.Pool, *, limit: int = 200) -> int:
        """Handle every saga whose timer is due; safe with several replicas. Each saga is
        its own savepoint: one the engine cannot take (or whose write can never succeed)
        is parked, one whose write fails for a passing reason (a reply won the race) is
        left for the next round, and the rest go on. An outage fails the round."""
        now = self.clock()
        async with transaction(pool) as conn:
            rows = await store.due(conn, now, limit)
            out: list[Envelope] = []
            for row in rows:
                try:
                    state = store.from_row(row)
                    decision = decide(self.definition, state, TimedOut(now))
                    entry = self._entry(decision, "timer") if decision.changed else None
                except Exception as exc:
                    await self._park_id(conn, row["saga_id"], str(row["step"]), f"timer: {exc!r}")
                    continue
                if entry is None:
                    continue
                try:
                    async with conn.transaction():
                        saved = await store.save(conn, decision.state, entry)
                except Exception as exc:
                    disposition = classify(exc)
                    if disposition is Disposition.OUTAGE:
                        raise
                    if disposition is Disposition.PERMANENT:
                        await self._park(conn, state, f"timer: {exc!r}")
                    else:
                        log.warning("saga %s: timer write failed (%r)", state.saga_id, exc)
                    continue
                out += self._commands(saved, decision, None)
            await outbox.add(conn, *out)
        return len(rows)

    async def resume(self, tx: Connection, saga_id: str) -> bool:
        """Take back a parked saga: the step it is at is sent again (a new attempt). False
        if there is no such parked saga."""
        state = await store.load(tx, saga_id)
        if state is None or await store.parked_reason(tx, saga_id) is None:
            return False
        decision = decide(self.definition, state, Resumed(self.clock()))
        saved = await store.save(tx, decision.state, self._entry(decision, "resumed"))
        await outbox.add(tx, *self._commands(saved, decision, None))
        return True

    def _step_name(self, state: SagaState) -> str:
        steps = self.definition.steps
        return steps[state.step].name if 0 <= state.step < len(steps) else f"#{state.step}"

    async def _park(self, tx: Connection, state: SagaState, reason: str) -> None:
        await self._park_id(tx, state.saga_id, self._step_name(state), reason)

    async def _park_id(self, tx: Connection, saga_id: str, step: str, reason: str) -> None:
        log.error("saga %s parked at %s: %s", saga_id, step, reason)
        await store.park(tx, saga_id, step, storable_text(reason))

    async def run_timers(
        self, pool: asyncpg.Pool, stop: asyncio.Event, *, interval: float = 0.2
    ) -> None:
        while not stop.is_set():
            try:
                fired = await self.fire_timers(pool)
            except Exception:
                log.exception("timer loop error; continuing")
                fired = 0
            if not fired:
                await sleep_or_stop(stop, interval)

    def _entry(self, decision: Decision, event: str) -> store.LogEntry:
        step = self.definition.steps[decision.state.step].name
        return store.LogEntry(step, event, decision.note, [c.type for c in decision.commands])

    def _commands(
        self, state: SagaState, decision: Decision, cause: uuid.UUID | None
    ) -> list[Envelope]:
        return [
            new_message(
                c.type,
                c.payload,
                key=state.saga_id,
                topic=topic_name(self.namespace, c.type),
                correlation_id=state.saga_id,
                causation_id=cause,
                message_id=derived_id(state.saga_id, c.type, c.attempt),
            )
            for c in decision.commands
        ]
