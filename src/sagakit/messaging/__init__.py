"""Reliable messaging: envelope and codec, transports, transactional outbox, inbox, and the
consumer runtime that ties them together."""

from sagakit.messaging.envelope import Envelope, derived_id, new_message
from sagakit.messaging.outbox import OutboxRelay
from sagakit.messaging.retry import RetryPolicy
from sagakit.messaging.router import MessageContext, Router
from sagakit.messaging.runtime import ConsumerOptions, ConsumerRuntime, ConsumerStats

__all__ = [
    "ConsumerOptions",
    "ConsumerRuntime",
    "ConsumerStats",
    "Envelope",
    "MessageContext",
    "OutboxRelay",
    "RetryPolicy",
    "Router",
    "derived_id",
    "new_message",
]
