"""A service: one process with its own database, the framework's tables, an outbox relay, a
consumer, and optionally an HTTP app. It takes part in sagas by handling their commands, and
orchestrates sagas by hosting their definitions.

    flight = Service("flight", migrations="trip.flight", sagas=[TRIP])

    @flight.handles("flight.book")
    async def book(ctx: MessageContext, cmd: BookFlight) -> None:
        ...  # ctx.tx: the transaction that also records the message as handled
        await ctx.reply("flight.booked", {"flight_ref": ref})

    trips = Service("trips", orchestrates=[TRIP])

Run one with ``sagakit run MODULE:NAME`` (or ``service.serve()``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import APIRouter
from pydantic import BaseModel

from sagakit.config import group_name
from sagakit.db import MigrationSet
from sagakit.errors import ConfigError
from sagakit.messaging import MessageContext, Router
from sagakit.messaging.router import Route
from sagakit.saga import SagaDefinition
from sagakit.topics import DEAD_LETTERS, topic_name

if TYPE_CHECKING:
    from fastapi import FastAPI

    from sagakit.orchestration import Orchestrator
    from sagakit.runtime.host import Runtime

M = TypeVar("M", bound=BaseModel)
HandlerFn = Callable[[MessageContext, Any], Awaitable[None]]
Background = Callable[["Runtime", asyncio.Event], Coroutine[Any, Any, None]]
"""A loop run beside the consumer until the event is set (supervised: restarted on failure)."""


RESERVED_COMPONENTS = ("messaging", "orchestrator")
"""Migration components of the framework's own tables."""


class Mode(StrEnum):
    ORCHESTRATION = "orchestration"
    CHOREOGRAPHY = "choreography"


class ContractError(ConfigError):
    """A handler does not fit the saga definition it serves; raised at start-up."""


@dataclass(frozen=True)
class Registration:
    message_type: str
    handler: HandlerFn
    model: type[BaseModel] | None
    replies: tuple[str, ...]
    topic: str | None


class Service:
    """Everything one process hosts. Options:

    - ``database``: its database on the configured server (default: the service's name;
      namespaced, created at start-up if missing and allowed).
    - ``migrations``: its own tables: a package holding ``sql/NNNN_name.sql`` files, or a
      :class:`MigrationSet`. The framework's tables are migrated too.
    - ``sagas``: definitions whose commands this service handles: each handler is checked
      against them at start-up (payload model, reply types).
    - ``orchestrates``: definitions whose sagas this service runs (state in its database,
      timers, ``GET /sagas``, ``POST /sagas/{name}/start``).
    - ``publishes``: message types it sends besides replies (their topics are created).
    - ``gauges``: metric name -> SQL returning one number, read at each scrape.
    """

    def __init__(
        self,
        name: str,
        *,
        database: str | None = None,
        migrations: MigrationSet | str | None = None,
        sagas: Sequence[SagaDefinition] = (),
        orchestrates: Sequence[SagaDefinition] = (),
        publishes: Sequence[str] = (),
        routes: APIRouter | None = None,
        background: Sequence[Background] = (),
        gauges: Mapping[str, str] | None = None,
    ) -> None:
        if not name or not name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"service name {name!r}: use letters, digits, - and _")
        self.name = name
        self.database = database or name.replace("-", "_")
        if isinstance(migrations, str):
            migrations = MigrationSet.from_package(name, migrations)
        if migrations is not None and migrations.component in RESERVED_COMPONENTS:
            raise ConfigError(
                f"{name}: migration component {migrations.component!r} is the framework's;"
                " pass MigrationSet.from_package(<another name>, package)"
            )
        self.migrations = migrations
        self.sagas = tuple(sagas)
        self.orchestrates = tuple(orchestrates)
        self.publishes = tuple(publishes)
        self.routes = routes or APIRouter()
        """HTTP endpoints of this service: add yours with ``service.routes.post(...)``."""
        self.background: list[Background] = list(background)
        self.gauges = dict(gauges or {})
        self.registrations: dict[str, Registration] = {}

    # -- declaring -------------------------------------------------------------------------
    def handles(
        self,
        type: str,
        model: type[M] | None = None,
        *,
        replies: Sequence[str] = (),
        topic: str | None = None,
    ) -> Callable[
        [Callable[[MessageContext, M], Awaitable[None]]],
        Callable[[MessageContext, M], Awaitable[None]],
    ]:
        """Register the handler of message type ``type``. For a command of one of ``sagas``
        the payload model defaults to the action's; ``replies`` (the reply types the handler
        may send) are checked against the definition at start-up, and ``ctx.reply`` refuses
        any other at run time."""

        def register(
            fn: Callable[[MessageContext, M], Awaitable[None]],
        ) -> Callable[[MessageContext, M], Awaitable[None]]:
            if type in self.registrations:
                raise ConfigError(f"{self.name}: a handler for {type!r} is already registered")
            self.registrations[type] = Registration(type, fn, model, tuple(replies), topic)
            return fn

        return register

    def task(self, fn: Background) -> Background:
        """Register a background loop (decorator)."""
        self.background.append(fn)
        return fn

    # -- derived -----------------------------------------------------------------------------
    def router(self, mode: Mode, namespace: str) -> Router:
        """The message handlers of this service in ``mode``."""
        from sagakit.choreography import Choreographer, Participation

        r = Router(namespace)
        derived = self.choreographs(mode)
        commands = {c for d in self.followed for c in d.command_types} if derived else set()
        parts = {}
        for reg in self.registrations.values():
            model, replies = self._contract(reg)
            if reg.message_type in commands:  # run by the choreographer, from saga events
                parts[reg.message_type] = Participation(reg.handler, model, replies)
            else:
                r.add(reg.message_type, reg.handler, model, topic=reg.topic, replies=replies)
        if derived:
            found = Choreographer(self.followed, parts, namespace=namespace).router()
        elif self.orchestrates:
            found = self.orchestrator(namespace).router()
        else:
            return r
        for route in found.routes.values():
            r.add(route.message_type, route.handler, route.model, topic=route.topic)
        return r

    def orchestrator(self, namespace: str) -> Orchestrator:
        """The orchestrator of ``orchestrates``. The commands of those sagas that this
        service handles itself run in-process, in the orchestrator's transaction (see
        :class:`~sagakit.orchestration.Orchestrator`): hosting the orchestrator in a
        participant saves their messages."""
        from sagakit.orchestration import Orchestrator

        commands = {c for d in self.orchestrates for c in d.command_types}
        local = {}
        for reg in self.registrations.values():
            topic = topic_name(namespace, reg.message_type)
            if reg.message_type in commands and reg.topic in (None, topic):
                model, replies = self._contract(reg)
                local[reg.message_type] = Route(
                    reg.message_type, topic, model, reg.handler, replies
                )
        group = group_name(namespace, self.name)
        return Orchestrator(self.orchestrates, namespace=namespace, local=local, group=group)

    @property
    def followed(self) -> tuple[SagaDefinition, ...]:
        """The definitions this service takes part in or runs (each version once)."""
        both = {(d.name, d.version): d for d in (*self.sagas, *self.orchestrates)}
        return tuple(both.values())

    def choreographs(self, mode: Mode) -> bool:
        """Whether this service follows its sagas' events itself (choreography derived from
        the definitions)."""
        return mode is Mode.CHOREOGRAPHY and bool(self.followed)

    def keeps_sagas(self, mode: Mode) -> bool:
        """Whether this service keeps saga state (its own sagas, or its copy of them)."""
        return bool(self.orchestrates) or self.choreographs(mode)

    def message_types(self, mode: Mode) -> tuple[str, ...]:
        """Every message type this service reads or writes: one topic each (in derived
        choreography, saga events share their definition's topic instead)."""
        if self.choreographs(mode):
            routes = self.router(mode, "").routes.values()
            plain = [r.message_type for r in routes if r.topic == topic_name("", r.message_type)]
            return tuple(dict.fromkeys([*plain, *self.publishes]))
        types = [*self.router(mode, "").types, *self.publishes]
        for reg in self.registrations.values():
            types += self._contract(reg)[1] or ()
        for d in self.orchestrates:
            types += d.message_types
        return tuple(dict.fromkeys(types))

    def topics(self, mode: Mode, namespace: str = "") -> tuple[str, ...]:
        """The topics this service reads (a handler's own ``topic=`` included) and writes."""
        read = self.router(mode, namespace).topics
        names = (*self.message_types(mode), DEAD_LETTERS)
        return tuple(dict.fromkeys([*read, *(topic_name(namespace, t) for t in names)]))

    def check(self, mode: Mode = Mode.ORCHESTRATION) -> None:
        """Raise :class:`ContractError` naming every handler that does not fit its saga."""
        problems = []
        for reg in self.registrations.values():
            try:
                self._contract(reg)
            except ContractError as exc:
                problems.append(str(exc))
        if problems:
            raise ContractError(f"{self.name}: " + "; ".join(problems))
        self.router(mode, "")  # duplicate handlers, orchestrator clashes

    def _contract(self, reg: Registration) -> tuple[type[BaseModel] | None, tuple[str, ...] | None]:
        """The model and the allowed replies of a registration, checked against every
        definition the service takes part in that sends the command (a reply must mean
        something to each of them)."""
        model, allowed = reg.model, None
        successes: list[tuple[str, str]] = []
        for d in self.sagas:
            found = d.action_for(reg.message_type)
            if found is None:
                continue
            step, action = found
            model = model or action.payload
            if action.payload is not None and model is not action.payload:
                taken = getattr(model, "__name__", model)
                raise ContractError(
                    f"handler of {reg.message_type!r} takes {taken}, but saga {d.name!r}"
                    f" (step {step.name}) sends {action.payload.__name__}"
                )
            known = d.replies_to(reg.message_type)
            unknown = [r for r in reg.replies if r not in known]
            if unknown:
                named = ", ".join(map(repr, unknown))
                raise ContractError(
                    f"handler of {reg.message_type!r} declares reply {named},"
                    f" which saga {d.name!r} does not know (step {step.name} expects"
                    f" {', '.join(known)})"
                )
            allowed = tuple(r for r in (known if allowed is None else allowed) if r in known)
            successes.append((d.name, action.done))
        lost = [f"{name} ({done})" for name, done in successes if done not in (allowed or ())]
        if lost and not reg.replies:
            raise ContractError(
                f"handler of {reg.message_type!r} serves sagas that expect different replies:"
                f" no reply means success to {', '.join(lost)}; give those sagas one action"
            )
        return model, reg.replies or allowed

    # -- running -----------------------------------------------------------------------------
    def app(self, settings: Any = None, *, on_fatal: Callable[[], None] = lambda: None) -> FastAPI:
        """This service as an ASGI app (its lifespan runs everything)."""
        from sagakit.runtime.host import create_app

        return create_app(self, settings, on_fatal=on_fatal)

    def serve(self) -> None:
        """Run this service until SIGTERM; see :func:`sagakit.runtime.host.serve`."""
        from sagakit.runtime.host import serve

        serve(self)

    def __repr__(self) -> str:
        return f"Service({self.name!r})"


def check_system(services: Sequence[Service], mode: Mode = Mode.ORCHESTRATION) -> None:
    """Check services meant to run together: each is consistent and has a database of its
    own, each orchestrated definition has one orchestrating service, and every command of it
    exactly one handler among them."""
    for s in services:
        s.check(mode)
    handlers: dict[str, list[str]] = {}
    for s in services:
        for t in dict.fromkeys([*s.registrations, *s.router(mode, "").types]):
            handlers.setdefault(t, []).append(s.name)
    problems = []
    owners: dict[str, list[str]] = {}
    for s in services:
        owners.setdefault(s.database, []).append(s.name)
    for db, names in owners.items():
        if len(names) > 1:
            problems.append(f"database {db!r} is shared by {' and '.join(names)} (one each)")
    runners: dict[str, list[str]] = {}
    for s in services:
        for name in dict.fromkeys(d.name for d in s.orchestrates):  # versions: one name
            runners.setdefault(name, []).append(s.name)
    for name, names in runners.items():
        if len(names) > 1:
            problems.append(f"{name}: orchestrated by {' and '.join(names)} (one service runs it)")
    for s in services:
        for d in s.orchestrates:
            for command in d.command_types:
                found = handlers.get(command, [])
                if len(found) != 1:
                    who = " and ".join(found) or "no service"
                    problems.append(f"{d.name}: {command!r} is handled by {who}")
    if mode is Mode.CHOREOGRAPHY:
        problems += _choreography_problems(services)
    if problems:
        raise ContractError("; ".join(problems))


def _choreography_problems(services: Sequence[Service]) -> list[str]:
    """In choreography a handler runs only in a service that follows its saga, and each
    saga needs its tracker (the orchestrating service): without one, no step times out."""
    problems = []
    followed = {d.name for s in services if s.choreographs(Mode.CHOREOGRAPHY) for d in s.followed}
    tracked = {d.name for s in services for d in s.orchestrates}
    for name in sorted(followed - tracked):
        problems.append(f"{name}: no service tracks it (orchestrates=) in choreography")
    saga_of = {c: d.name for s in services for d in s.followed for c in d.command_types}
    for s in services:
        mine = {c for d in s.followed for c in d.command_types}
        for command in s.registrations.keys() & saga_of.keys() - mine:
            problems.append(
                f"{s.name} handles {command!r} of {saga_of[command]} but does not list it in"
                " sagas= (in choreography it would never run)"
            )
    return sorted(problems)
