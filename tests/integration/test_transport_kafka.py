import pytest

from sagakit.messaging.transport.kafka import KafkaTransport
from tests.contract.transport import TransportContract


class TestKafkaTransport(TransportContract):
    @pytest.fixture
    def transport(self, kafka: KafkaTransport) -> KafkaTransport:
        return kafka
