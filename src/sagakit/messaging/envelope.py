"""The envelope every message travels in, whatever the transport."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

SCHEMA_VERSION = 1


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class Envelope:
    """One message: routing (topic, key), identity, lineage and a JSON payload."""

    type: str
    """What the message means, e.g. ``flight.book``."""
    topic: str
    """Where it is published."""
    key: str
    """Partitioning key: the saga id, so one saga's messages stay in order."""
    payload: Mapping[str, Any]
    """The body, validated against the type's model by the receiving handler."""
    message_id: uuid.UUID = field(default_factory=uuid.uuid4)
    """Unique per message; the inbox deduplicates on it."""
    correlation_id: str | None = None
    """The business transaction it belongs to (the saga id)."""
    causation_id: uuid.UUID | None = None
    """The message that caused this one."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Transport headers, e.g. trace context; carried through, never interpreted."""
    created_at: datetime = field(default_factory=_now)
    schema_version: int = SCHEMA_VERSION

    def reply(
        self,
        type: str,
        payload: BaseModel | Mapping[str, Any],
        *,
        topic: str | None = None,
        key: str | None = None,
        message_id: uuid.UUID | None = None,
    ) -> Envelope:
        """A message caused by this one: same correlation, key and trace headers."""
        return new_message(
            type,
            payload,
            topic=topic,
            key=self.key if key is None else key,
            correlation_id=self.correlation_id,
            causation_id=self.message_id,
            headers=self.headers,
            message_id=message_id,
        )


def new_message(
    type: str,
    payload: BaseModel | Mapping[str, Any],
    *,
    key: str,
    topic: str | None = None,
    correlation_id: str | None = None,
    causation_id: uuid.UUID | None = None,
    headers: Mapping[str, str] | None = None,
    message_id: uuid.UUID | None = None,
) -> Envelope:
    """Build an envelope; the topic defaults to the type (one topic per message type)."""
    body = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else dict(payload)
    return Envelope(
        type=type,
        topic=topic or type,
        key=key,
        payload=body,
        message_id=message_id or uuid.uuid4(),
        correlation_id=correlation_id if correlation_id is not None else key,
        causation_id=causation_id,
        headers=dict(headers or {}),
    )


def derived_id(*parts: object) -> uuid.UUID:
    """A deterministic message id: the same inputs always give the same id (idempotent
    re-sends, ids for undecodable records from topic/partition/offset)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, "sagakit:" + "/".join(str(p) for p in parts))
