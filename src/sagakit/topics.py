"""The topics this project declares. The dev stack creates them, with their partition count,
before any service starts (a broker that auto-creates topics would pick its own count).
"""

from __future__ import annotations

DEAD_LETTERS = "sagakit.dead-letters"
"""Where a consumer parks a message it cannot handle, with the error in the headers."""

# Seed topic names where the seeds have them; one topic per message type.
ORDER_FLOW_TOPICS: tuple[str, ...] = (
    "order.created",
    "order.cancel",
    "order.confirm",
    "order.cancelled",
    "order.confirmed",
    "inventory.reserve",
    "inventory.reserved",
    "inventory.failed",
    "inventory.release",
    "inventory.released",
    "inventory.complete",
    "inventory.completed",
    "payment.process",
    "payment.success",
    "payment.failed",
    "payment.charged",
    "payment.refund",
    "payment.refunded",
)


def declared_topics() -> tuple[str, ...]:
    return (*ORDER_FLOW_TOPICS, DEAD_LETTERS)
