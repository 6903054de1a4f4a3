"""The orchestrator service: holds saga state and drives the order saga over Kafka."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sagakit.db import MigrationSet
from sagakit.errors import ConfigError
from sagakit.flows.order_saga import ORDER_SAGA
from sagakit.messaging import Router
from sagakit.services import SERVICE_DATABASES
from sagakit.services.host import Mode, Runtime, ServiceSpec, prune_periodically
from sagakit.services.messages import Outcome, Placed
from sagakit.services.orchestrator import store
from sagakit.services.orchestrator.api import routes
from sagakit.services.orchestrator.engine_runtime import Orchestrator


def _orchestrator(namespace: str) -> Orchestrator:
    return Orchestrator(
        ORDER_SAGA,
        starts_on="order.created",
        namespace=namespace,
        start_model=Placed,
        reply_model=Outcome,
    )


def router(mode: Mode, namespace: str) -> Router:
    if mode is not Mode.ORCHESTRATION:
        raise ConfigError("the orchestrator runs in orchestration mode only")
    return _orchestrator(namespace).router()


async def timers(rt: Runtime, stop: asyncio.Event) -> None:
    await _orchestrator(rt.settings.namespace).run_timers(rt.pool, stop)


async def prune_sagas(rt: Runtime, stop: asyncio.Event) -> None:
    """Forget finished sagas and their log after the saga retention."""
    keep = timedelta(hours=rt.settings.saga_retention_hours)
    await prune_periodically(rt, stop, store.prune, keep, what="sagas", batch=1000)


SPEC = ServiceSpec(
    name="orchestrator",
    database=SERVICE_DATABASES["orchestrator"],
    migrations=MigrationSet.from_package("orchestrator", "sagakit.services.orchestrator"),
    routes=routes,
    router=router,
    background=(timers, prune_sagas),
    gauges={"sagakit_sagas_parked": "SELECT count(*) FROM sagas WHERE parked IS NOT NULL"},
)
