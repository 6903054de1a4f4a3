"""The orchestrator runtime: feeds the pure engine from messages and timers, and writes the
new state, its log entry and its commands (outbox) in one transaction."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import asyncpg

from sagakit import metrics, tracing
from sagakit.aio import repeat
from sagakit.db import Connection, transaction
from sagakit.errors import ConfigError, MessageError
from sagakit.messaging import (
    Envelope,
    MessageContext,
    Router,
    codec,
    derived_id,
    new_message,
    outbox,
)
from sagakit.messaging.outbox import storable_text
from sagakit.messaging.retry import Disposition, classify
from sagakit.messaging.router import Route
from sagakit.orchestration import store
from sagakit.saga import (
    Cancelled,
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


class Orchestrator:
    """Runs the sagas of the given definitions: a definition's ``starts_on`` message starts
    one, replies steer it, timers re-send or compensate.

    The start message and every reply are validated against the definition's models
    (``SagaDefinition.data``, ``Action.reply``) before the engine sees them: a malformed one
    is dead-lettered at once instead of starting (or steering) a saga whose commands no
    participant can take.

    ``local``: the routes of commands this process handles itself (the orchestrator hosted
    by a participant, sharing its database). Such a command runs in the transaction of the
    decision that sends it, in a savepoint, and its reply steers the saga at once: no
    message, no hop, and still one commit. A local handler that fails is rolled back to its
    savepoint and its command goes over the broker after all, where the participant's
    consumer retries or dead-letters it as for any command. A timer's re-send always goes
    over the broker."""

    def __init__(
        self,
        definitions: Sequence[SagaDefinition],
        *,
        namespace: str = "",
        clock: Callable[[], float] = time.time,
        local: Mapping[str, Route] | None = None,
        group: str = "",
    ) -> None:
        self.definitions = {(d.name, d.version): d for d in definitions}
        if len(self.definitions) != len(definitions):
            raise ConfigError("two saga definitions share a name and a version")
        self.latest = newest(definitions)
        self.starters = {d.starts_on: d for d in self.latest.values()}
        if len(self.starters) != len(self.latest):
            raise ConfigError("two saga definitions start on the same message type")
        self.namespace = namespace
        self.clock = clock
        self.local = dict(local or {})
        self._savepoints = itertools.count()
        self.group = group
        """The consumer group a local handler sees in its context (the host's)."""

    def router(self) -> Router:
        r = Router(self.namespace)
        for d in self.latest.values():
            r.add(d.starts_on, self.on_start, d.data)
        replies = dict.fromkeys(t for d in self.definitions.values() for t in d.reply_types)
        for reply in replies:  # a reply type may serve several definitions (or versions)
            r.add(reply, self.on_reply)
        return r

    def definition(self, state: SagaState) -> SagaDefinition:
        """The definition (and version) ``state`` runs on; a clear error if not hosted."""
        return hosted(self.definitions, state.definition, state.definition_version)

    def _state(self, definition: SagaDefinition, state: SagaState) -> SagaState:
        """``state``, checked against its definition (a saga at a step the definition does
        not have cannot go on: raises, and the caller parks it), with the members of a saga
        stored before members were rebuilt."""
        if not 0 <= state.step < len(definition.stages):
            raise MessageError(f"saga at step #{state.step}, which {definition.name} lacks")
        stage = {s.name for s in definition.stages[state.step]}
        legacy = state.members.get(store.LEGACY)
        if legacy is not None:
            if len(stage) > 1:  # the step it was at is a group now: nothing says which
                raise MessageError("saga stored before groups, at what is now a group")
            return state.evolve(members=dict.fromkeys(stage, legacy))
        unknown = set(state.members) - stage
        if unknown:
            raise MessageError(
                f"saga at {definition.stage_name(state.step)} with steps {sorted(unknown)}"
                " that stage does not have"
            )
        return state

    async def on_start(self, ctx: MessageContext, valid: object) -> None:
        env = ctx.envelope
        saga_id = env.correlation_id or env.key
        if not saga_id:
            raise MessageError(f"{env.type}: no saga id (neither correlation id nor key)")
        definition = self.starters[env.type]
        await self.start(ctx.tx, definition, saga_id, env.payload, cause=env.message_id, out=ctx)

    async def start(
        self,
        tx: Connection,
        definition: SagaDefinition,
        saga_id: str,
        data: Mapping[str, Any],
        *,
        cause: uuid.UUID | None = None,
        out: MessageContext | None = None,
    ) -> None:
        """:meth:`begin` a saga; the same start again changes nothing, and a start of an
        existing saga id with other data (an id reused) is noted in that saga's log and
        ignored: the first one stands."""
        if await self.begin(tx, definition, saga_id, data, cause=cause, out=out):
            return
        if not await store.started_with(tx, saga_id, data):
            log.warning("%s for saga %s with other data ignored", definition.starts_on, saga_id)
            state = await store.load(tx, saga_id)
            step = _step_name(definition, state) if state else "start"
            await store.note(tx, saga_id, step, definition.starts_on, "ignored: other start data")

    async def begin(
        self,
        tx: Connection,
        definition: SagaDefinition,
        saga_id: str,
        data: Mapping[str, Any],
        *,
        cause: uuid.UUID | None = None,
        out: MessageContext | None = None,
    ) -> bool:
        """Start a saga in ``tx``: its row, first log line and first commands (to ``out``'s
        batch, or straight into the outbox). False if a saga with this id exists already
        (the same start announced twice)."""
        decision = start(definition, Started(saga_id, dict(data), self.clock()))
        saved = await store.insert(
            tx, decision.state, store.entry(definition, decision, "start", data)
        )
        if saved is None:
            return False
        commands = await self._dispatch(tx, definition, saved, decision, cause)
        if out is not None:
            for message in commands:
                out.send(message)
        else:
            await outbox.add(tx, *commands)
        return True

    async def on_reply(self, ctx: MessageContext, valid: object) -> None:
        env = ctx.envelope
        saga_id = env.correlation_id or env.key
        state, parked = await store.load_parked(ctx.tx, saga_id)
        if state is None:
            log.warning("reply %s for unknown saga %s ignored", env.type, saga_id)
            return
        definition = self.definitions.get((state.definition, state.definition_version))
        if parked is not None:
            # Resuming re-sends the step's command; its participant answers again then.
            log.warning("reply %s for parked saga %s ignored (%s)", env.type, saga_id, parked)
            step = _step_name(definition, state)
            await store.note(ctx.tx, saga_id, step, env.type, "ignored: parked")
            return
        if definition is None:
            try:
                self.definition(state)
            except MessageError as exc:
                await self._park(ctx.tx, None, state, f"{env.type}: {exc}")
            return
        check_payload(definition, env.type, env.payload)
        now = self.clock()
        try:
            state = self._state(definition, state)
            decision = decide(definition, state, Replied(env.type, env.payload, now))
            entry = (
                store.entry(definition, decision, env.type, env.payload)
                if decision.changed
                else None
            )
        except Exception as exc:  # the engine cannot take this saga: set it aside
            await self._park(ctx.tx, definition, state, f"{env.type}: {exc!r}")
            return
        if entry is not None:
            saved = await store.save(ctx.tx, decision.state, entry)
            metrics.step_answered(definition, state, env.type, now)
            for message in await self._dispatch(
                ctx.tx, definition, saved, decision, env.message_id
            ):
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
                with tracing.span("timer", parent=store.trace_of(row)):
                    out += await self._fire(conn, row, now)
            await outbox.add(conn, *out)
        return len(rows)

    async def _fire(self, conn: Connection, row: asyncpg.Record, now: float) -> list[Envelope]:
        """One saga's timer, in a savepoint of its own; the commands to send (carrying the
        saga's trace)."""
        try:
            state = store.from_row(row)
            definition = self.definition(state)
            state = self._state(definition, state)
            decision = decide(definition, state, TimedOut(now))
            entry = store.entry(definition, decision, "timer") if decision.changed else None
        except Exception as exc:
            await self._park_id(conn, row["saga_id"], str(row["step"]), f"timer: {exc!r}")
            return []
        if entry is None:
            return []
        try:
            async with conn.transaction():
                saved = await store.save(conn, decision.state, entry)
                # (a timer's re-send goes over the broker: no handler runs under the
                # row locks this round holds)
                commands = await self._dispatch(
                    conn, definition, saved, decision, None, local=False
                )
        except Exception as exc:
            disposition = classify(exc)
            if disposition is Disposition.OUTAGE:
                raise
            if disposition is Disposition.PERMANENT:
                await self._park(conn, definition, state, f"timer: {exc!r}")
            else:
                log.warning("saga %s: timer write failed (%r)", state.saga_id, exc)
            return []
        return [replace(m, headers=tracing.inject(m.headers)) for m in commands]

    async def resume(self, tx: Connection, saga_id: str, *, by: str = "", note: str = "") -> bool:
        """Take back a parked saga: the commands it is waiting on are sent again (a new
        attempt). False if there is no such parked saga."""
        state, parked = await store.load_parked(tx, saga_id)
        if state is None or parked is None:
            return False
        return await self._operate(tx, state, Resumed(self.clock()), "resume", by, note)

    async def retry_now(self, tx: Connection, saga_id: str, *, by: str, note: str = "") -> bool:
        """Send the commands a running (or compensating) saga waits on again now, without
        waiting for their timer: a new attempt, counted against the step's attempts as a
        timer's re-send would be. False if the saga is not running or compensating, or is
        parked (``resume`` takes a parked saga back)."""
        state, parked = await store.load_parked(tx, saga_id)
        if state is None or state.status not in (SagaStatus.RUNNING, SagaStatus.COMPENSATING):
            return False
        if parked is not None:
            return False  # (resume takes a parked saga back)
        return await self._operate(tx, state, Resumed(self.clock()), "retry-step", by, note)

    async def cancel(self, tx: Connection, saga_id: str, note: str, *, by: str) -> bool:
        """Compensate a running saga from where it is. False if it is not running, or is
        past its pivot (it can only go forward)."""
        state, parked = await store.load_parked(tx, saga_id)
        if state is None or parked is not None:
            return False
        return await self._operate(tx, state, Cancelled(note, self.clock()), "cancel", by, note)

    async def retry(self, tx: Connection, saga_id: str, *, by: str, note: str = "") -> bool:
        """Send a saga's failed compensations again, each with a new budget. False if the
        saga is not in ``COMPENSATION_FAILED``."""
        state = await store.load(tx, saga_id)
        if state is None or state.status is not SagaStatus.COMPENSATION_FAILED:
            return False
        return await self._operate(tx, state, Resumed(self.clock()), "retry", by, note)

    async def resolve(self, tx: Connection, saga_id: str, note: str, *, by: str) -> bool:
        """Close a saga in ``COMPENSATION_FAILED`` as ``FAILED``: an operator settled what
        its compensation could not (the note says how). False if it is not in that state."""
        state = await store.load(tx, saga_id)
        if state is None or state.status is not SagaStatus.COMPENSATION_FAILED:
            return False
        return await self._operate(tx, state, Resolved(note, self.clock()), "resolve", by, note)

    async def _operate(
        self, tx: Connection, state: SagaState, event: Event, action: str, by: str, note: str
    ) -> bool:
        """Apply an operator's ``event`` (for ``action``); its log line says who did it and
        their note. False if the engine refused it (nothing is written)."""
        definition = self.definition(state)
        decision = decide(definition, self._state(definition, state), event)
        if not decision.changed:
            return False
        label = operator_label(action, by, note)
        entry = store.entry(definition, decision, label, {"by": by, "note": note})
        saved = await store.save(tx, decision.state, entry)
        await outbox.add(tx, *await self._dispatch(tx, definition, saved, decision, None))
        return True

    async def _park(
        self, tx: Connection, definition: SagaDefinition | None, state: SagaState, reason: str
    ) -> None:
        await self._park_id(tx, state.saga_id, _step_name(definition, state), reason)

    async def _park_id(self, tx: Connection, saga_id: str, step: str, reason: str) -> None:
        log.error("saga %s parked at %s: %s", saga_id, step, reason)
        await store.park(tx, saga_id, step, storable_text(reason))

    async def run_timers(
        self, pool: asyncpg.Pool, stop: asyncio.Event, *, interval: float = 0.2
    ) -> None:
        await repeat(lambda: self.fire_timers(pool), stop, interval=interval, what="timer")

    async def _dispatch(
        self,
        tx: Connection,
        definition: SagaDefinition,
        saved: SagaState,
        decision: Decision,
        cause: uuid.UUID | None,
        *,
        local: bool = True,
    ) -> list[Envelope]:
        """The messages to send for ``decision`` (stored as ``saved``). Its local commands
        run here instead (unless ``local`` is False), one after another, each with the
        saga's latest state; what their replies decide may run further local commands. A
        command's later attempts go over the broker: an undo that answers "not now" is
        tried again at the broker's pace, not ten times in this transaction."""
        out: list[Envelope] = []
        state = saved
        queue = deque(self._numbered(saved, decision, cause))
        while queue:
            attempt, command = queue.popleft()
            route = self.local.get(command.type) if local and attempt == 1 else None
            ran = (
                None
                if route is None
                else await self._run_local(tx, definition, state, route, command)
            )
            if ran is None:
                out.append(command)
                continue
            state, sent, more = ran
            out += sent
            queue.extend(more)
        return out

    async def _run_local(
        self,
        tx: Connection,
        definition: SagaDefinition,
        state: SagaState,
        route: Route,
        command: Envelope,
    ) -> tuple[SagaState, list[Envelope], list[tuple[int, Envelope]]] | None:
        """Run ``command``'s handler and apply its reply in a savepoint of ``tx``: the
        saga's new state, the other messages the handler sent, and the commands the reply
        decided. None if anything failed: rolled back to the savepoint, the command goes
        over the broker instead. Raises only when even the rollback fails (the database
        is gone, or the transaction with it)."""
        ctx = MessageContext(command, tx, self.group, self.namespace, replies=route.replies)
        began = time.perf_counter()
        savepoint = f"sagakit_local_{next(self._savepoints)}"  # a handler may start a saga
        await tx.execute(f"SAVEPOINT {savepoint}")
        try:
            with tracing.span(
                f"handle {command.type}",
                attributes={"sagakit.saga_id": state.saga_id, "sagakit.local": True},
            ):
                await route.handler(ctx, route.parse(command))
                sent = [
                    _as_read(replace(m, headers=tracing.inject(m.headers))) for m in ctx.outgoing
                ]
            others: list[Envelope] = []
            commands: list[tuple[int, Envelope]] = []
            for m in sent:
                if not self._answers(definition, state, m):
                    others.append(m)
                    continue
                check_payload(definition, m.type, m.payload)
                now = self.clock()
                step = decide(definition, state, Replied(m.type, m.payload, now))
                if not step.changed:
                    continue
                entry = store.entry(definition, step, m.type, m.payload)
                before, state = state, await store.save(tx, step.state, entry)
                metrics.step_answered(definition, before, m.type, now)
                commands += self._numbered(state, step, m.message_id)
            await tx.execute(f"RELEASE SAVEPOINT {savepoint}")
        except Exception as exc:
            await tx.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")  # raises if it cannot
            await tx.execute(f"RELEASE SAVEPOINT {savepoint}")
            log.warning(
                "saga %s: %s failed in-process (%r); sending it instead",
                state.saga_id,
                command.type,
                exc,
            )
            return None
        metrics.handled(command.type, time.perf_counter() - began)
        return state, others, commands

    def _answers(self, definition: SagaDefinition, state: SagaState, m: Envelope) -> bool:
        """Whether a local handler's message ``m`` is a reply to its saga's command: a reply
        type of the saga, for this saga, on that type's own topic (anything else is
        published as it would have been)."""
        return (
            m.correlation_id == state.saga_id
            and m.type in definition.reply_types
            and m.topic == topic_name(self.namespace, m.type)
        )

    def _numbered(
        self, state: SagaState, decision: Decision, cause: uuid.UUID | None
    ) -> list[tuple[int, Envelope]]:
        """:meth:`_commands`, each with its attempt."""
        attempts = [c.attempt for c in decision.commands]
        return list(zip(attempts, self._commands(state, decision, cause), strict=True))

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


OPERATED = {
    "resume": "resumed",
    "retry": "retried",
    "resolve": "resolved",
    "retry-step": "step retried",
    "cancel": "cancelled",
}
"""How the saga's log names each operator action, in both modes."""


def operator_label(action: str, by: str, note: str) -> str:
    """How the saga's log names an operator's ``action``: what, by whom, and why."""
    who = f" by {by}" if by else ""
    return f"{OPERATED[action]}{who}: {note}" if note else f"{OPERATED[action]}{who}"


def _as_read(message: Envelope) -> Envelope:
    """``message`` encoded and decoded again: what its reader would get (JSON's types)."""
    value = codec.encode_value(message)
    return codec.decode(
        message.topic, message.key.encode(), value, codec.encode_headers(message.headers)
    )


def _step_name(definition: SagaDefinition | None, state: SagaState) -> str:
    return definition.stage_name(state.step) if definition is not None else f"#{state.step}"
