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
    "product.updated",
)


def topic_name(namespace: str, name: str) -> str:
    """Topics of a namespace are prefixed with it, so several deployments (or test runs)
    can share one cluster without reading each other's messages."""
    return f"{namespace}.{name}" if namespace else name


def declared_topics(namespace: str = "") -> tuple[str, ...]:
    return tuple(topic_name(namespace, t) for t in (*ORDER_FLOW_TOPICS, DEAD_LETTERS))
