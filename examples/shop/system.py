"""The shop's processes and their ports. The same four run in both modes: orchestrated, the
orchestrator drives the sagas; choreographed, the participants drive them from the saga's
events and the orchestrator tracks them (timeline, timeouts, ``GET /sagas``).

Orchestrated, the order service can host the orchestrator instead (``services("order")``):
three processes, and fewer messages per saga."""

from __future__ import annotations

from collections.abc import Mapping

SERVICES: Mapping[str, str] = {
    "order": "examples.shop.order:service",
    "inventory": "examples.shop.inventory:service",
    "payment": "examples.shop.payment:service",
    "orchestrator": "examples.shop.orchestrator:service",
}
DEFAULT_PORTS: Mapping[str, int] = {
    "order": 8001,
    "inventory": 8002,
    "payment": 8003,
    "orchestrator": 8004,
}

HOSTS = ("orchestrator", "order")
"""Who orchestrates the sagas: a service of its own, or the order service."""


def services(host: str = "orchestrator") -> Mapping[str, str]:
    """The processes when ``host`` orchestrates the sagas."""
    if host == "orchestrator":
        return SERVICES
    if host != "order":
        raise ValueError(f"{host!r}: the sagas are orchestrated by one of {', '.join(HOSTS)}")
    rest = {name: ref for name, ref in SERVICES.items() if name != "orchestrator"}
    return {**rest, "order": "examples.shop.order:hosting"}
