"""Routing messages to handlers: one typed handler per message type on each topic.

router = Router()

@router.handles("flight.book", BookFlight)
async def book(ctx: MessageContext, cmd: BookFlight) -> None:
    ...  # ctx.tx is the open transaction; ctx.publish(...) writes to the outbox
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

from sagakit.db.pool import Connection
from sagakit.errors import MessageError
from sagakit.messaging import outbox
from sagakit.messaging.envelope import Envelope
from sagakit.topics import topic_name

M = TypeVar("M", bound=BaseModel)
Handler = Callable[["MessageContext", Any], Awaitable[None]]


@dataclass
class MessageContext:
    """What a handler gets besides its payload: the message, and the transaction that will
    record it as handled.

    Messages it publishes are collected in ``outgoing`` and written to the outbox in the same
    transaction, just before it commits (the runtime writes a whole batch's in one
    statement): they go out if and only if the handler's effects commit."""

    envelope: Envelope
    tx: Connection
    group: str
    namespace: str = ""
    outgoing: list[Envelope] = field(default_factory=list)
    replies: tuple[str, ...] | None = None
    """The reply types this handler may send with :meth:`reply` (None: any)."""
    reply_topic: str | None = None
    """Where :meth:`reply` publishes (default: the reply type's own topic). In choreography,
    the saga's topic, where every service taking part follows it."""

    def send(self, message: Envelope) -> None:
        """Queue an already built message."""
        self.outgoing.append(message)

    async def flush(self) -> None:
        """Write the queued messages to the outbox now (the runtime does this for you)."""
        if self.outgoing:
            await outbox.add(self.tx, *self.outgoing)
            self.outgoing.clear()

    async def publish(
        self,
        type: str,
        payload: BaseModel | Mapping[str, Any],
        *,
        topic: str | None = None,
        key: str | None = None,
        message_id: uuid.UUID | None = None,
    ) -> Envelope:
        """Queue a message caused by this one (same key, correlation and trace headers)."""
        topic = topic or topic_name(self.namespace, type)
        msg = self.envelope.reply(type, payload, topic=topic, key=key, message_id=message_id)
        self.outgoing.append(msg)
        return msg

    async def reply(
        self, type: str, payload: BaseModel | Mapping[str, Any] | None = None
    ) -> Envelope:
        """Answer the command being handled. A type the saga does not expect is refused
        here: the command is dead-lettered with the reason, where an operator sees it at
        once (the saga itself goes on to its step timeout), instead of a reply that no
        one reads."""
        if self.replies is not None and type not in self.replies:
            raise MessageError(
                f"{self.envelope.type}: {type!r} is not a reply to it"
                f" (expected {', '.join(self.replies)})"
            )
        body = payload if payload is not None else {}
        return await self.publish(type, body, topic=self.reply_topic)


@dataclass(frozen=True)
class Route:
    message_type: str
    topic: str
    model: type[BaseModel] | None
    handler: Handler
    replies: tuple[str, ...] | None = None

    def parse(self, envelope: Envelope) -> Any:
        if self.model is None:
            return envelope.payload
        try:
            return self.model.model_validate(envelope.payload)
        except ValueError as exc:
            raise MessageError(f"{self.message_type}: invalid payload: {exc}") from None


class Router:
    """Handlers by topic and message type. Each type is read from the topic of the same
    name, prefixed with ``namespace`` when one is set, unless it names another topic (a
    type may then have a handler on each of several topics)."""

    def __init__(self, namespace: str = "") -> None:
        self.namespace = namespace
        self.routes: dict[tuple[str, str], Route] = {}

    def handles(
        self, type: str, model: type[M] | None = None, *, topic: str | None = None
    ) -> Callable[
        [Callable[[MessageContext, M], Awaitable[None]]],
        Callable[[MessageContext, M], Awaitable[None]],
    ]:
        def register(
            fn: Callable[[MessageContext, M], Awaitable[None]],
        ) -> Callable[[MessageContext, M], Awaitable[None]]:
            self.add(type, fn, model, topic=topic)
            return fn

        return register

    def add(
        self,
        type: str,
        handler: Handler,
        model: type[BaseModel] | None = None,
        *,
        topic: str | None = None,
        replies: tuple[str, ...] | None = None,
    ) -> None:
        topic = topic or topic_name(self.namespace, type)
        if (topic, type) in self.routes:
            raise ValueError(f"a handler for {type!r} on {topic} is already registered")
        self.routes[topic, type] = Route(type, topic, model, handler, replies)

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.topic for r in self.routes.values()))

    @property
    def types(self) -> tuple[str, ...]:
        """The message types handled, each once."""
        return tuple(dict.fromkeys(r.message_type for r in self.routes.values()))

    def route(self, envelope: Envelope) -> Route:
        route = self.routes.get((envelope.topic, envelope.type))
        if route is None:
            raise MessageError(f"no handler for message type {envelope.type!r} on {envelope.topic}")
        return route
