"""Orchestration: a service that hosts saga definitions keeps each saga's state in its own
database and drives it over Kafka (commands out, replies in, timers for the silent ones).

The engine deciding each transition is pure (:mod:`sagakit.saga`); this package feeds it from
messages and timers and stores what it decides (:mod:`.store`), with the HTTP endpoints that
show and start sagas (:mod:`.api`).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

from sagakit.orchestration.api import routes
from sagakit.orchestration.orchestrator import Orchestrator
from sagakit.runtime.pruning import prune_periodically

if TYPE_CHECKING:
    from sagakit.runtime.host import Runtime


def orchestrator(rt: Runtime) -> Orchestrator:
    return Orchestrator(rt.service.orchestrates, namespace=rt.settings.namespace)


async def timers(rt: Runtime, stop: asyncio.Event) -> None:
    """Re-send, compensate or fail the sagas whose step or deadline passed."""
    await orchestrator(rt).run_timers(rt.pool, stop)


async def prune_sagas(rt: Runtime, stop: asyncio.Event) -> None:
    """Forget finished sagas and their log after the saga retention."""
    from sagakit.orchestration import store

    keep = timedelta(hours=rt.settings.saga_retention_hours)
    await prune_periodically(rt.pool, stop, store.prune, keep, what="sagas", batch=1000)


LOOPS = (timers, prune_sagas)
GAUGES = {
    "sagakit_sagas_parked": "SELECT count(*) FROM sagas WHERE parked IS NOT NULL",
    "sagakit_sagas_compensation_failed": (
        "SELECT count(*) FROM sagas WHERE status = 'COMPENSATION_FAILED'"
    ),
}

__all__ = ["GAUGES", "LOOPS", "Orchestrator", "orchestrator", "routes"]
