"""A relay that dies (like SIGKILL) right after the broker acknowledged its first batch,
before its transaction deletes the rows. Usage: DB_URL BOOTSTRAP"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence

import asyncpg

from sagakit.messaging import OutboxRelay
from sagakit.messaging.transport import OutgoingRecord
from sagakit.messaging.transport.kafka import KafkaOptions, KafkaProducer


class DieAfterPublish(KafkaProducer):
    async def send_many(self, records: Sequence[OutgoingRecord]) -> None:
        await super().send_many(records)
        os._exit(137)


async def main(url: str, bootstrap: str) -> None:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    producer = DieAfterPublish(KafkaOptions(bootstrap=bootstrap))
    await producer.start()
    await OutboxRelay(pool, producer, listen_url=url).run(asyncio.Event())


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:3]))
