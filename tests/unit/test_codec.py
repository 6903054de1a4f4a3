from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sagakit.errors import MessageError
from sagakit.messaging import codec
from sagakit.messaging.envelope import derived_id, new_message

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(payload=st.dictionaries(st.text(), json_values, max_size=5), key=st.text(min_size=1))
def test_round_trip(payload: dict[str, object], key: str) -> None:
    env = new_message("thing.happened", payload, key=key, headers={"traceparent": "00-1"})
    back = codec.decode(
        env.topic, key.encode(), codec.encode_value(env), codec.encode_headers(env.headers)
    )
    assert back == env


def test_reply_carries_lineage() -> None:
    cause = new_message("a.b", {}, key="saga-1")
    effect = cause.reply("c.d", {"x": 1})
    assert effect.causation_id == cause.message_id
    assert effect.correlation_id == "saga-1"
    assert effect.key == "saga-1" and effect.topic == "c.d"


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"not json",
        b"\xff\xfe",
        b"[1,2]",
        b'{"type": "x"}',
        json.dumps(
            {"id": "nope", "type": "x", "created_at": "2026-01-01T00:00:00", "payload": {}}
        ).encode(),
        json.dumps(
            {
                "id": str(uuid.uuid4()),
                "type": "x",
                "created_at": "2026-01-01T00:00:00",
                "payload": [],
            }
        ).encode(),
        json.dumps(
            {
                "id": str(uuid.uuid4()),
                "type": "x",
                "created_at": "2026-01-01T00:00:00",
                "payload": {},
                "schema_version": 99,
            }
        ).encode(),
    ],
)
def test_malformed_records_raise_message_error(value: bytes | None) -> None:
    with pytest.raises(MessageError):
        codec.decode("t", b"k", value, [])


def test_derived_ids_are_deterministic() -> None:
    assert derived_id("t", 0, 5) == derived_id("t", 0, 5)
    assert derived_id("t", 0, 5) != derived_id("t", 0, 6)


@given(st.lists(st.tuples(st.text(), st.none() | st.binary())))
def test_packed_headers_keep_any_bytes(headers: list[tuple[str, bytes | None]]) -> None:
    assert codec.unpack_headers(codec.pack_headers(headers)) == tuple(headers)
