"""The order saga end to end: services as processes, real PostgreSQL and broker. Every
scenario runs in each saga mode the fleet fixture is parametrized with."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import pytest
from examples.shop.audit import audit

from sagakit.config import database_url
from sagakit.fleet import Fleet
from sagakit.messaging import derived_id
from tests.e2e.conftest import MODES, Shop
from tests.e2e.test_demo_and_bench import run_cli


async def assert_invariants(fleet: Fleet) -> None:
    report = await audit(fleet.stack.database_url, fleet.settings)
    assert report.violations == []


@pytest.fixture(params=[*MODES, "hosted"], ids=lambda m: getattr(m, "value", m))
def fleet(request: pytest.FixtureRequest) -> Fleet:
    """Each mode's shop, and the shop whose order service hosts its orchestrator."""
    if request.param == "hosted":
        hosted: Fleet = request.getfixturevalue("hosted_fleet")
        return hosted
    fleets: dict[object, Fleet] = request.getfixturevalue("shop_fleets")
    return fleets[request.param]


async def test_happy_path(shop: Shop) -> None:
    product, customer = await shop.product(stock=10, price_cents=250), await shop.customer(10_000)
    order = await shop.settled(await shop.order(customer, product, 2))
    assert order["status"] == "CONFIRMED" and order["amount_cents"] == 500
    stock = await shop.get("inventory", f"/products/{product}")
    assert (stock["available"], stock["reserved"], stock["sold"]) == (8, 0, 2)
    money = await shop.get("payment", f"/customers/{customer}")
    assert (money["balance_cents"], money["charged_cents"]) == (9_500, 500)
    await assert_invariants(shop.fleet)


async def test_out_of_stock_cancels_and_keeps_no_money(shop: Shop) -> None:
    """Reserve-first (the default flow) never charges an order it has no stock for; pay-first
    charges and refunds (tests/e2e/test_modes_matrix.py). Either way the customer ends with
    their money."""
    product, customer = await shop.product(stock=1, price_cents=100), await shop.customer(10_000)
    order = await shop.settled(await shop.order(customer, product, 2))
    assert order["status"] == "CANCELLED" and order["reason"] == "out of stock"
    money = await shop.get("payment", f"/customers/{customer}")
    assert money["balance_cents"] == 10_000
    assert money["charged_cents"] == money["refunded_cents"]
    stock = await shop.get("inventory", f"/products/{product}")
    assert (stock["available"], stock["reserved"]) == (1, 0)
    await assert_invariants(shop.fleet)


async def test_declined_payment_releases_the_stock(shop: Shop) -> None:
    product, customer = await shop.product(stock=5, price_cents=100), await shop.customer(150)
    order = await shop.settled(await shop.order(customer, product, 2))
    assert order["status"] == "CANCELLED" and order["reason"] == "insufficient funds"
    stock = await shop.get("inventory", f"/products/{product}")
    assert (stock["available"], stock["reserved"], stock["sold"]) == (5, 0, 0)
    money = await shop.get("payment", f"/customers/{customer}")
    assert money["balance_cents"] == 150
    await assert_invariants(shop.fleet)


async def test_a_hundred_orders_for_ten_units(shop: Shop) -> None:
    product = await shop.product(stock=10, price_cents=100)
    customers = [await shop.customer(1_000) for _ in range(20)]
    ids = await asyncio.gather(*(shop.order(customers[n % 20], product, 1) for n in range(100)))
    orders = await asyncio.gather(*(shop.settled(i) for i in ids))
    statuses = [o["status"] for o in orders]
    assert statuses.count("CONFIRMED") == 10 and statuses.count("CANCELLED") == 90
    stock = await shop.get("inventory", f"/products/{product}")
    assert (stock["available"], stock["reserved"], stock["sold"]) == (0, 0, 10)
    await assert_invariants(shop.fleet)


async def test_duplicate_idempotency_key_starts_one_saga(shop: Shop) -> None:
    product, customer = await shop.product(stock=10, price_cents=100), await shop.customer(1_000)
    key = str(uuid.uuid4())
    ids = await asyncio.gather(*(shop.order(customer, product, 3, key=key) for _ in range(5)))
    assert len(set(ids)) == 1
    order = await shop.settled(ids[0])
    assert order["status"] == "CONFIRMED"
    stock = await shop.get("inventory", f"/products/{product}")
    assert stock["sold"] == 3, "one saga, one reservation"
    reused = await shop.http.post(
        f"{shop.fleet.url('order')}/orders",
        json={"customer_id": customer, "product_id": product, "quantity": 4},
        headers={"Idempotency-Key": key},
    )
    assert reused.status_code == 409
    await assert_invariants(shop.fleet)


async def test_invalid_requests_get_4xx_with_a_reason(shop: Shop) -> None:
    url = f"{shop.fleet.url('order')}/orders"
    bad = [
        b"not json",
        b"[]",
        b'{"customer_id": "c", "product_id": "p"}',
        b'{"customer_id": "c", "product_id": "p", "quantity": 0}',
        b'{"customer_id": "c", "product_id": "p", "quantity": "three"}',
        b'{"customer_id": "", "product_id": "p", "quantity": 1}',
        b'{"customer_id": "c", "product_id": "p", "quantity": 1, "extra": true}',
    ]
    for body in bad:
        r = await shop.http.post(url, content=body, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500, (body, r.status_code)
        assert r.json()["detail"], body
    r = await shop.http.put(f"{shop.fleet.url('inventory')}/products/x", json={"stock": -1})
    assert r.status_code == 422
    assert (await shop.http.get(f"{shop.fleet.url('order')}/orders/nope")).status_code == 404
    health = await shop.get("order", "/health")
    assert health["database"] is True and health["broker"] is True


async def test_participant_killed_mid_saga(shop: Shop) -> None:
    """SIGKILL the payment service with sagas in flight, restart it: every saga ends, and
    the books balance."""
    product, customer = await shop.product(stock=40, price_cents=10), await shop.customer(250)
    ids = [await shop.order(customer, product, 1) for _ in range(15)]
    shop.fleet.kill("payment")
    ids += [await shop.order(customer, product, 1) for _ in range(15)]
    await asyncio.sleep(1)
    await shop.fleet.restart("payment")
    orders = await asyncio.gather(*(shop.settled(i, timeout=120) for i in ids))
    statuses = [o["status"] for o in orders]
    assert statuses.count("CONFIRMED") == 25, statuses  # 250 cents buys 25 units
    money = await shop.get("payment", f"/customers/{customer}")
    assert money["charged_cents"] - money["refunded_cents"] == 250
    await assert_invariants(shop.fleet)


async def test_check_command_passes_on_the_books(shop: Shop) -> None:
    env = {"SAGAKIT_NAMESPACE": shop.fleet.settings.namespace}
    code, out = await run_cli(shop.fleet.stack, "check", env=env)
    assert code == 0, out
    assert "invariants hold" in out


async def test_stuck_orders_are_reported(shop: Shop) -> None:
    """A saga that stops moving (here: payment is down) is reported: log, metric, and
    GET /orders?stuck=true. When payment comes back, the saga finishes."""
    product, customer = await shop.product(stock=5, price_cents=10), await shop.customer(100)
    shop.fleet.kill("payment")
    try:
        order_id = await shop.order(customer, product, 1)
        async with asyncio.timeout(30):
            while True:
                page = await shop.get("order", "/orders?stuck=true&limit=1000")
                stuck = [o["order_id"] for o in page["orders"]]  # type: ignore[union-attr]
                health = await shop.get("order", "/health")
                if order_id in stuck and int(health.get("stuck_orders", 0)) >= 1:  # type: ignore[call-overload]
                    break
                await asyncio.sleep(0.5)
        metrics = (await shop.http.get(f"{shop.fleet.url('order')}/metrics")).text
        assert 'sagakit_stuck_orders{service="order"}' in metrics
        log = shop.fleet.processes["order"].log.read_text()
        assert "stuck for over" in log
    finally:
        await shop.fleet.restart("payment")
    assert (await shop.settled(order_id, timeout=120))["status"] in ("CONFIRMED", "CANCELLED")
    page = await shop.get("order", "/orders?stuck=true&limit=1000")
    assert order_id not in [o["order_id"] for o in page["orders"]]  # type: ignore[union-attr]
    await assert_invariants(shop.fleet)


async def test_hosting_replica_killed_mid_saga(hosted_fleet: Fleet) -> None:
    """SIGKILL one of the two order services that orchestrate, with sagas in flight (their
    own commands run in-process): the other takes its partitions, every saga ends once,
    and the books balance."""
    async with httpx.AsyncClient(timeout=30) as client:
        await _kill_a_hosting_replica(Shop(hosted_fleet, client))


async def _kill_a_hosting_replica(shop: Shop) -> None:
    product, customer = await shop.product(stock=40, price_cents=10), await shop.customer(250)
    ids = [await shop.order(customer, product, 1) for _ in range(15)]
    shop.fleet.kill("order-2")
    ids += [await shop.order(customer, product, 1) for _ in range(15)]
    await shop.fleet.restart("order-2")
    orders = await asyncio.gather(*(shop.settled(i, timeout=120) for i in ids))
    statuses = [o["status"] for o in orders]
    assert statuses.count("CONFIRMED") == 25, statuses
    await assert_invariants(shop.fleet)


async def test_the_hosting_order_service_sends_itself_nothing(hosted_fleet: Fleet) -> None:
    """Started in the order's own transaction and confirmed in-process: the order
    service's inbox never saw the start message nor its own command, and the saga, kept in
    the order database, ran to its end there."""
    async with httpx.AsyncClient(timeout=30) as client:
        shop = Shop(hosted_fleet, client)
        product, customer = await shop.product(stock=5, price_cents=10), await shop.customer(100)
        order_id = await shop.order(customer, product, 1)
        assert (await shop.settled(order_id))["status"] == "CONFIRMED"
    url = database_url(hosted_fleet.stack.database_url, hosted_fleet.settings.database("orders"))
    conn = await asyncpg.connect(url)
    try:
        events = await conn.fetch(
            "SELECT event FROM saga_log WHERE saga_id = $1 ORDER BY id", order_id
        )
        own = [derived_id(order_id, "order.created"), derived_id(order_id, "order.confirm", 1)]
        seen = await conn.fetchval(
            "SELECT count(*) FROM sagakit_inbox WHERE message_id = ANY($1::uuid[])", own
        )
    finally:
        await conn.close()
    assert [e["event"] for e in events][-2:] == ["inventory.completed", "order.confirmed"]
    assert seen == 0
