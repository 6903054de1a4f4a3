"""Transport port and its adapters."""

from sagakit.messaging.transport.memory import MemoryBroker, MemoryTransport
from sagakit.messaging.transport.port import (
    Consumer,
    OutgoingRecord,
    Producer,
    Record,
    TopicPartition,
    Transport,
)

__all__ = [
    "Consumer",
    "MemoryBroker",
    "MemoryTransport",
    "OutgoingRecord",
    "Producer",
    "Record",
    "TopicPartition",
    "Transport",
]
