"""Orchestration: a service that hosts saga definitions keeps each saga's state in its own
database and drives it over Kafka (commands out, replies in, timers for the silent ones).

The engine deciding each transition is pure (:mod:`sagakit.saga`); this package feeds it from
messages and timers and stores what it decides (:mod:`.store`), with the HTTP endpoints that
show and start sagas (:mod:`.api`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sagakit.orchestration.api import routes
from sagakit.orchestration.orchestrator import Orchestrator
from sagakit.runtime.pruning import prune_periodically

if TYPE_CHECKING:
    from sagakit.choreography import Choreographer
    from sagakit.runtime.host import Runtime
    from sagakit.runtime.service import Mode, Service


def orchestrator(rt: Runtime) -> Orchestrator:
    return rt.orchestrator


async def timers(rt: Runtime, stop: asyncio.Event) -> None:
    """Re-send, compensate or fail the sagas whose step or deadline passed."""
    await orchestrator(rt).run_timers(rt.pool, stop)


def choreographer(rt: Runtime) -> Choreographer:
    """The tracker's side of choreography (it runs no participant's handler)."""
    from sagakit.choreography import Choreographer

    return Choreographer(rt.service.followed, {}, namespace=rt.settings.namespace)


async def timer_events(rt: Runtime, stop: asyncio.Event) -> None:
    """Publish a timer event for each choreographed saga whose timer is due."""
    await choreographer(rt).run_timers(rt.pool, stop)


async def prune_sagas(rt: Runtime, stop: asyncio.Event) -> None:
    """Forget finished sagas and their log after the saga retention."""
    from sagakit.orchestration import store

    keep = timedelta(hours=rt.settings.saga_retention_hours)
    await prune_periodically(rt.pool, stop, store.prune, keep, what="sagas", batch=1000)


def loops(service: Service, mode: Mode) -> tuple[Callable[..., Any], ...]:
    """The background loops of a service keeping saga state: timers where it orchestrates
    (in choreography: timer events, from the tracker), pruning of finished sagas."""
    if not service.keeps_sagas(mode):
        return ()
    if not service.orchestrates:
        return (prune_sagas,)
    return (timer_events if service.choreographs(mode) else timers, prune_sagas)


GAUGES = {
    "sagakit_sagas_parked": "SELECT count(*) FROM sagas WHERE parked IS NOT NULL",
    # Unfinished, not set aside, and its timer a minute overdue (or missing): nothing moves
    # it (the orchestrator, or in choreography the tracker, is down or behind).
    "sagakit_sagas_stuck": (
        "SELECT count(*) FROM sagas WHERE status IN ('RUNNING', 'COMPENSATING')"
        " AND parked IS NULL AND (due_at IS NULL OR due_at < extract(epoch FROM now()) - 60)"
    ),
    "sagakit_sagas_compensation_failed": (
        "SELECT count(*) FROM sagas WHERE status = 'COMPENSATION_FAILED'"
    ),
}

__all__ = ["GAUGES", "Orchestrator", "choreographer", "loops", "orchestrator", "routes"]
