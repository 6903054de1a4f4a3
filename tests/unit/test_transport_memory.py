import pytest

from sagakit.messaging.transport import MemoryTransport
from tests.contract.transport import TransportContract


class TestMemoryTransport(TransportContract):
    @pytest.fixture
    def transport(self) -> MemoryTransport:
        return MemoryTransport()
