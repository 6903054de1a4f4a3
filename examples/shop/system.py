"""The shop's processes and their ports. The same four run in both modes: orchestrated, the
orchestrator drives the sagas; choreographed, the participants drive them from the saga's
events and the orchestrator tracks them (timeline, timeouts, ``GET /sagas``)."""

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
