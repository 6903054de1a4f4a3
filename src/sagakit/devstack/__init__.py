"""The local development stack: PostgreSQL and a Kafka-protocol broker, started on demand."""

from sagakit.devstack.stack import DevStack, StackInfo

__all__ = ["DevStack", "StackInfo"]
