"""Topic names: one topic per message type, prefixed by the namespace. Which topics exist is
derived from the services and saga definitions (:meth:`Service.topics`), and they are
created with their partition count before anything is sent to them (a broker that
auto-creates topics would pick its own count)."""

from __future__ import annotations

DEAD_LETTERS = "sagakit.dead-letters"
"""Where a consumer parks a message it cannot handle, with the error in the headers."""


def topic_name(namespace: str, name: str) -> str:
    """Topics of a namespace are prefixed with it, so several deployments (or test runs)
    can share one cluster without reading each other's messages."""
    return f"{namespace}.{name}" if namespace else name
