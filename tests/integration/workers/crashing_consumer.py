"""A consumer that dies (like SIGKILL: no cleanup) right after its first database commit,
before it commits the Kafka offset. Usage: DB_URL BOOTSTRAP TOPIC GROUP"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping, Sequence

import asyncpg

from sagakit.messaging import ConsumerOptions, ConsumerRuntime
from sagakit.messaging.transport import Consumer, TopicPartition
from sagakit.messaging.transport.kafka import KafkaOptions, KafkaTransport
from tests.integration.kit import recording_router


class DieBeforeOffsetCommit(KafkaTransport):
    def consumer(self, group: str, topics: Sequence[str]) -> Consumer:
        inner = super().consumer(group, topics)

        async def commit(offsets: Mapping[TopicPartition, int]) -> bool:
            os._exit(137)

        inner.commit = commit  # type: ignore[method-assign]
        return inner


async def main(url: str, bootstrap: str, topic: str, group: str) -> None:
    transport = DieBeforeOffsetCommit(
        KafkaOptions(bootstrap=bootstrap, session_timeout_ms=3000, heartbeat_interval_ms=500)
    )
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    runtime = ConsumerRuntime(
        group=group,
        router=recording_router(topic),
        transport=transport,
        pool=pool,
        options=ConsumerOptions(),
    )
    await runtime.run(asyncio.Event())


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
