"""The consumer runtime on real PostgreSQL and the broker: inbox, retries, dead letters."""

from __future__ import annotations

import uuid

from sagakit.errors import TransientError
from sagakit.messaging import MessageContext, Router, codec, new_message
from sagakit.messaging.transport import OutgoingRecord
from sagakit.messaging.transport.kafka import KafkaTransport
from sagakit.topics import DEAD_LETTERS
from tests.conftest import unique
from tests.contract.transport import drain
from tests.integration.kit import (
    Step,
    create_effects,
    effects,
    recording_router,
    running_consumer,
    running_relay,
    wait_for,
)


def record(topic: str, key: str, seq: int, message_id: uuid.UUID | None = None) -> OutgoingRecord:
    env = new_message(topic, Step(seq=seq), key=key, message_id=message_id)
    return OutgoingRecord(topic, key.encode(), codec.encode_value(env))


async def dead_letters_for(kafka: KafkaTransport, group: str, count: int) -> list[dict[str, str]]:
    async with kafka.consumer(unique("dlq-reader"), [DEAD_LETTERS]) as consumer:
        found: list[dict[str, str]] = []
        while len(found) < count:
            for r in await drain(consumer, 1):
                headers = codec.decode_headers(r.headers)
                if headers.get("sagakit.dlq.group") == group:
                    found.append({**headers, "value": (r.value or b"").decode("latin-1")})
        return found


async def test_each_message_handled_once_even_when_delivered_twice(
    fresh_db: str, kafka: KafkaTransport
) -> None:
    topic = unique("rt")
    await kafka.ensure_topics([topic], 3)
    await create_effects(fresh_db)
    dup = uuid.uuid4()
    records = [record(topic, f"k{n % 7}", n) for n in range(50)]
    records += [record(topic, "twice", 99, dup), record(topic, "twice", 99, dup)]
    async with kafka.producer() as producer:
        await producer.send_many(records)
    group = unique("g")
    async with running_consumer(fresh_db, kafka, group, recording_router(topic)) as rt:

        async def done() -> bool:
            return rt.stats.handled + rt.stats.duplicates == 52

        await wait_for(done)
    rows = await effects(fresh_db)
    assert len(rows) == 51
    assert sorted(r["seq"] for r in rows) == [*range(50), 99]
    assert rt.stats.duplicates == 1


async def test_poison_messages_go_to_dead_letters_and_the_consumer_goes_on(
    fresh_db: str, kafka: KafkaTransport
) -> None:
    topic = unique("rt")
    await kafka.ensure_topics([topic], 1)
    await create_effects(fresh_db)
    wrong_schema = new_message(topic, {"seq": "not a number"}, key="k")
    unknown_type = new_message("no.such.type", {"seq": 1}, key="k", topic=topic)
    async with kafka.producer() as producer:
        await producer.send_many(
            [
                OutgoingRecord(topic, b"k", b"\x00not json at all", (("trace", b"t-1"),)),
                OutgoingRecord(topic, b"k", codec.encode_value(wrong_schema)),
                OutgoingRecord(topic, b"k", codec.encode_value(unknown_type)),
                record(topic, "k", 7),
            ]
        )
    group = unique("g")
    async with (
        running_relay(fresh_db, kafka),
        running_consumer(fresh_db, kafka, group, recording_router(topic)) as rt,
    ):

        async def done() -> bool:
            return rt.stats.handled == 1 and rt.stats.dead_lettered == 3

        await wait_for(done)
        dead = await dead_letters_for(kafka, group, 3)
    assert [r["seq"] for r in await effects(fresh_db)] == [7]
    by_offset = {d["sagakit.dlq.offset"]: d for d in dead}
    assert by_offset["0"]["sagakit.dlq.error"] == "MessageError"
    assert by_offset["0"]["trace"] == "t-1", "original headers are kept"
    assert by_offset["0"]["value"] == "\x00not json at all", "original value is kept"
    assert "invalid payload" in by_offset["1"]["sagakit.dlq.reason"]
    assert "no handler" in by_offset["2"]["sagakit.dlq.reason"]
    assert {d["sagakit.dlq.topic"] for d in dead} == {topic}


async def test_retriable_errors_are_retried_then_dead_lettered(
    fresh_db: str, kafka: KafkaTransport
) -> None:
    topic = unique("rt")
    await kafka.ensure_topics([topic], 1)
    await create_effects(fresh_db)
    attempts: dict[int, int] = {}
    router = Router()

    @router.handles(topic, Step)
    async def flaky(ctx: MessageContext, step: Step) -> None:
        attempts[step.seq] = attempts.get(step.seq, 0) + 1
        await ctx.tx.execute(
            "INSERT INTO effects (message_id, key, seq) VALUES ($1, $2, $3)",
            ctx.envelope.message_id,
            ctx.envelope.key,
            step.seq,
        )
        if step.seq == 1 and attempts[1] < 3:
            raise TransientError("flaky dependency")
        if step.seq == 2:
            raise TransientError("always down")

    from sagakit.messaging import RetryPolicy

    group = unique("g")
    async with kafka.producer() as producer:
        await producer.send_many([record(topic, "k", n) for n in (1, 2, 3)])
    async with (
        running_relay(fresh_db, kafka),
        running_consumer(
            fresh_db,
            kafka,
            group,
            router,
            retry=RetryPolicy(max_attempts=4, initial_delay=0.01, max_delay=0.02),
        ) as rt,
    ):

        async def done() -> bool:
            return rt.stats.handled == 2 and rt.stats.dead_lettered == 1

        await wait_for(done)
        dead = await dead_letters_for(kafka, group, 1)
    assert attempts[1] >= 3 and attempts[2] >= 4
    assert sorted(r["seq"] for r in await effects(fresh_db)) == [1, 3], "failed tries rolled back"
    assert dead[0]["sagakit.dlq.attempts"] == "4"
    assert dead[0]["sagakit.dlq.error"] == "TransientError"
