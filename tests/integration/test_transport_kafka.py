import asyncio
from typing import Any

import pytest

from sagakit.devstack import StackInfo
from sagakit.messaging.transport import OutgoingRecord
from sagakit.messaging.transport.kafka import KafkaOptions, KafkaTransport
from tests.conftest import unique
from tests.contract.transport import TransportContract


class TestKafkaTransport(TransportContract):
    @pytest.fixture
    def transport(self, kafka: KafkaTransport) -> KafkaTransport:
        return kafka


async def test_a_quiet_consumer_fetches_less_often_and_wakes_with_records(
    stack: StackInfo,
) -> None:
    """After ``idle_after_s`` with nothing, fetches wait up to the idle max-wait (fewer
    empty fetches at rest); the first records bring the short max-wait back."""
    options = KafkaOptions(
        bootstrap=stack.kafka_bootstrap,
        fetch_max_wait_ms=20,
        fetch_idle_wait_ms=300,
        idle_after_s=0.3,
        session_timeout_ms=3000,
    )
    transport = KafkaTransport(options)
    topic = unique("quiet")
    await transport.ensure_topics([topic], 1)

    def wait_ms(consumer: Any) -> int:
        return int(consumer._consumer._fetcher._fetch_max_wait_ms)

    async with transport.consumer(unique("g"), [topic]) as consumer:
        await consumer.poll(max_records=10, timeout_ms=100)
        assert wait_ms(consumer) == 20, "starts short"
        await asyncio.sleep(0.4)
        await consumer.poll(max_records=10, timeout_ms=100)
        assert wait_ms(consumer) == 300, "quiet: the idle max-wait"
        async with transport.producer() as producer:
            await producer.send_many([OutgoingRecord(topic, b"k", b"v", ())])
        got: dict[Any, Any] = {}
        async with asyncio.timeout(10):
            while not got:
                got = await consumer.poll(max_records=10, timeout_ms=100)
        assert wait_ms(consumer) == 20, "records: short again"
