"""Dead letters can be listed, and replayed once their cause is fixed."""

from __future__ import annotations

import asyncio

import asyncpg

from sagakit import deadletters
from sagakit.errors import SagakitError
from sagakit.messaging import MessageContext, Router, codec, new_message
from sagakit.messaging.transport import OutgoingRecord
from sagakit.messaging.transport.kafka import KafkaTransport
from tests.conftest import unique
from tests.integration.kit import (
    Step,
    create_effects,
    effects,
    running_consumer,
    running_relay,
    wait_for,
)


async def test_list_then_replay_after_the_fix(fresh_db: str, kafka: KafkaTransport) -> None:
    topic, group, namespace = unique("dl"), unique("g"), unique("ns").replace("-", "")
    await kafka.ensure_topics([topic], 1)
    await kafka.ensure_topics([f"{namespace}.sagakit.dead-letters"], 1)
    await create_effects(fresh_db)
    fixed = False
    router = Router(namespace)

    @router.handles(topic, Step, topic=topic)
    async def handle(ctx: MessageContext, step: Step) -> None:
        if not fixed:
            raise SagakitError("bug: cannot handle this yet")
        await ctx.tx.execute(
            "INSERT INTO effects (message_id, key, seq) VALUES ($1, $2, $3)",
            ctx.envelope.message_id,
            ctx.envelope.key,
            step.seq,
        )

    env = new_message(topic, Step(seq=42), key="order-9", headers={"traceparent": "t-9"})
    async with kafka.producer() as producer:
        await producer.send_many(
            [OutgoingRecord(topic, b"order-9", codec.encode_value(env), (("traceparent", b"t-9"),))]
        )
        async with (
            running_relay(fresh_db, kafka),
            running_consumer(fresh_db, kafka, group, router) as rt,
        ):

            async def parked() -> bool:
                return rt.stats.dead_lettered == 1

            await wait_for(parked)
            letters: list[deadletters.DeadLetter] = []
            async with asyncio.timeout(30):
                while not letters:
                    letters = await deadletters.read(kafka, namespace)
            [letter] = letters
            assert letter.group == group and letter.topic == topic
            assert letter.message_id == env.message_id and letter.message_type == topic
            assert letter.error == "SagakitError" and "cannot handle" in letter.reason
            assert letter.headers == (("traceparent", b"t-9"),)

            fixed = True
            conn = await asyncpg.connect(fresh_db)
            assert await deadletters.replay(letter, consumer_db=conn, by="ada", note="fixed")
            assert not await deadletters.replay(letter, consumer_db=conn), "replayed already"
            [replayed] = await deadletters.replays(conn, group, [str(letter.message_id)])
            assert (replayed["replayed_by"], replayed["note"]) == ("ada", "fixed")
            await conn.close()

            async def handled() -> bool:
                return len(await effects(fresh_db)) == 1

            await wait_for(handled)
    rows = await effects(fresh_db)
    assert [(r["key"], r["seq"]) for r in rows] == [("order-9", 42)]
