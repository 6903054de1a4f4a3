"""The shop's processes: which services run in each mode, and on which ports."""

from __future__ import annotations

from collections.abc import Mapping

from sagakit import Mode

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


def services_for(mode: Mode) -> dict[str, str]:
    """Choreography needs no orchestrator."""
    names: tuple[str, ...] = ("order", "inventory", "payment")
    if mode is Mode.ORCHESTRATION:
        names = (*names, "orchestrator")
    return {n: SERVICES[n] for n in names}
