"""The one codec: envelope <-> Kafka record (key bytes, JSON value bytes, headers).

The value is self-contained JSON, so a record copied anywhere (a dead-letter topic, a log)
still carries its identity and lineage. Headers carry trace context only.
"""

from __future__ import annotations

import json
import struct
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sagakit.errors import MessageError
from sagakit.messaging.envelope import SCHEMA_VERSION, Envelope

Headers = list[tuple[str, bytes]]


def encode_value(env: Envelope) -> bytes:
    doc = {
        "id": str(env.message_id),
        "type": env.type,
        "correlation_id": env.correlation_id,
        "causation_id": str(env.causation_id) if env.causation_id else None,
        "created_at": env.created_at.isoformat(),
        "schema_version": env.schema_version,
        "payload": env.payload,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def encode_headers(headers: dict[str, str] | Any) -> Headers:
    return [(k, v.encode()) for k, v in dict(headers).items()]


_NULL = 0xFFFF_FFFF
"""Length that stands for a null header value (Kafka allows them)."""


def pack_headers(headers: Sequence[tuple[str, bytes | None]]) -> bytes:
    """Headers as one binary blob (the outbox stores them so): any bytes survive, NUL and
    null values included, which neither PostgreSQL ``text`` nor ``jsonb`` can hold. Per
    header: a 4-byte length and the UTF-8 name, a 4-byte length (or 0xFFFFFFFF for null)
    and the value."""
    out = bytearray()
    for name, value in headers:
        raw = name.encode("utf-8", "surrogatepass")
        out += struct.pack(">I", len(raw)) + raw
        out += struct.pack(">I", _NULL) if value is None else struct.pack(">I", len(value)) + value
    return bytes(out)


def unpack_headers(blob: bytes) -> tuple[tuple[str, bytes | None], ...]:
    """The inverse of :func:`pack_headers`."""
    out: list[tuple[str, bytes | None]] = []
    pos, end = 0, len(blob)
    while pos < end:
        (n,) = struct.unpack_from(">I", blob, pos)
        name = blob[pos + 4 : pos + 4 + n].decode("utf-8", "surrogatepass")
        pos += 4 + n
        (m,) = struct.unpack_from(">I", blob, pos)
        if m == _NULL:
            out.append((name, None))
            pos += 4
        else:
            out.append((name, bytes(blob[pos + 4 : pos + 4 + m])))
            pos += 4 + m
    return tuple(out)


def decode_headers(headers: Sequence[tuple[str, bytes | None]] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in headers or ():
        if v is not None:
            out[k] = v.decode("utf-8", "replace") if isinstance(v, bytes | bytearray) else str(v)
    return out


def decode(
    topic: str,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]],
) -> Envelope:
    """Decode a record; raise :class:`MessageError` (never retried) on any malformation."""
    if value is None:
        raise MessageError("record has no value")
    try:
        doc = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MessageError(f"value is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MessageError("value is not a JSON object")
    try:
        version = int(doc.get("schema_version", SCHEMA_VERSION))
        if version > SCHEMA_VERSION:
            raise MessageError(f"schema version {version} is newer than {SCHEMA_VERSION}")
        payload = doc["payload"]
        if not isinstance(payload, dict):
            raise MessageError("payload is not a JSON object")
        causation = doc.get("causation_id")
        return Envelope(
            type=str(doc["type"]),
            topic=topic,
            key=key.decode() if key is not None else "",
            payload=payload,
            message_id=uuid.UUID(doc["id"]),
            correlation_id=doc.get("correlation_id"),
            causation_id=uuid.UUID(causation) if causation else None,
            headers=decode_headers(headers),
            created_at=datetime.fromisoformat(doc["created_at"]),
            schema_version=version,
        )
    except MessageError:
        raise
    except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
        raise MessageError(f"malformed envelope: {exc!r}") from None
