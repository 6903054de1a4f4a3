"""Two orchestrator replicas share the sagas (orchestration mode only)."""

from __future__ import annotations

import asyncio

import pytest

from sagakit.runtime.host import Mode
from tests.e2e.conftest import Shop


@pytest.mark.parametrize("fleet", [Mode.ORCHESTRATION], indirect=True, ids=["orchestration"])
async def test_two_orchestrators_share_the_work(shop: Shop) -> None:
    product, customer = await shop.product(stock=100, price_cents=1), await shop.customer(10**6)
    ids = await asyncio.gather(*(shop.order(customer, product, 1) for _ in range(60)))
    orders = await asyncio.gather(*(shop.settled(i) for i in ids))
    assert all(o["status"] == "CONFIRMED" for o in orders)
    first = await shop.get("orchestrator", "/health")
    second = await shop.get("orchestrator-2", "/health")
    assert first["handled"] > 0 and second["handled"] > 0, (first, second)
