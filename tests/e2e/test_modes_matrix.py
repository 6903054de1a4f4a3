"""One definition, two runtimes, the same result: every scenario of the trip and of both shop
flows runs orchestrated and choreographed at once (each mode's fleet of processes on the real
stack), and what it leaves behind must be the same in both: the saga's end and the commands
it sent, and every participant's rows.

Scenarios: success; a refusal at every step that can refuse; a participant SIGKILLed while
its step's command is unanswered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from sagakit import Mode
from sagakit.dev import Fleet, database_url
from tests.e2e.conftest import Shop
from tests.e2e.test_trip import Agency, request, sent, steps

Outcome = dict[str, Any]


async def both(
    fleets: dict[Mode, Fleet], scenario: Callable[[Fleet], Awaitable[Outcome]]
) -> Outcome:
    """Run ``scenario`` in both modes at once; its outcomes must be equal. Returns one."""
    orchestrated, choreographed = await asyncio.gather(
        scenario(fleets[Mode.ORCHESTRATION]), scenario(fleets[Mode.CHOREOGRAPHY])
    )
    assert orchestrated == choreographed, {
        "orchestrated": orchestrated,
        "choreographed": choreographed,
    }
    return orchestrated


async def saga_copies(fleet: Fleet, saga_id: str) -> set[str | None]:
    """Choreography: the status of each service's own copy of the saga."""
    out = set()
    for svc in fleet.declared():
        conn = await asyncpg.connect(
            database_url(fleet.stack.database_url, fleet.settings.database(svc.database))
        )
        try:
            out.add(await conn.fetchval("SELECT status FROM sagas WHERE saga_id = $1", saga_id))
        finally:
            await conn.close()
    return out


async def copies_agree(fleet: Fleet, saga_id: str, status: str) -> None:
    """In choreography every service follows the saga's events: each copy ends alike."""
    if fleet.mode is Mode.CHOREOGRAPHY:
        async with asyncio.timeout(20):
            while await saga_copies(fleet, saga_id) != {status}:
                await asyncio.sleep(0.05)


# -- the trip ---------------------------------------------------------------------------------
TRIPS: dict[str, tuple[dict[str, Any], str, str | None]] = {
    # scenario: (request, saga status, reason)
    "success": (request(), "COMPLETED", None),
    "flight refused": (
        {**request(), "destination": "LHR"},
        "FAILED",
        "no flights from LHR to itself",
    ),
    "hotel refused": ({**request(), "nights": 20}, "FAILED", "no rooms for 20 nights in LIS"),
    "car refused": (request(car_class="limousine"), "FAILED", "no limousine cars at LIS"),
}


async def trip_outcome(agency: Agency, saga_id: str) -> Outcome:
    timeline = await agency.settled(saga_id)
    saga = timeline["saga"]
    await copies_agree(agency.fleet, saga_id, saga["status"])
    return {
        "saga": (saga["status"], saga["reason"]),
        "commands": sorted(steps(timeline)),  # a group's members answer in any order
        "rows": await agency.statuses(saga_id),
    }


@pytest.mark.parametrize("scenario", TRIPS)
async def test_trip(scenario: str, trip_fleets: dict[Mode, Fleet]) -> None:
    data, status, reason = TRIPS[scenario]

    async def run(fleet: Fleet) -> Outcome:
        async with httpx.AsyncClient(timeout=30) as client:
            agency = Agency(fleet, client)
            return await trip_outcome(agency, await agency.book(data))

    outcome = await both(trip_fleets, run)
    assert outcome["saga"] == (status, reason), outcome
    booked = outcome["rows"]
    if status == "COMPLETED":
        assert booked == {"flight": "BOOKED", "hotel": "BOOKED", "car": "RENTED"}
    else:  # nothing stays booked, whichever step refused
        assert set(booked.values()) <= {"CANCELLED", None}, booked


async def test_trip_participant_killed_mid_step(trip_fleets: dict[Mode, Fleet]) -> None:
    """The hotel is frozen with hotel.book unanswered, then SIGKILLed: the step times out,
    the stay is compensated, and the saga fails the same way in both modes."""

    async def run(fleet: Fleet) -> Outcome:
        async with httpx.AsyncClient(timeout=30) as client:
            agency = Agency(fleet, client)
            fleet.pause("hotel")
            try:
                saga_id = await agency.book(request())
                async with asyncio.timeout(30):
                    while (await agency.statuses(saga_id))["flight"] != "BOOKED":
                        await asyncio.sleep(0.05)
                fleet.kill("hotel")
                # book_hotel is sent twice (3 s, then 6 s) and then undone with the flight:
                # the saga waits in COMPENSATING for the hotel to come back and answer.
                timeline = await agency.reaches(saga_id, "COMPENSATING")
                assert timeline["saga"]["reason"] == "book_hotel timed out"
                undo = ["hotel.book", "hotel.book", "flight.cancel", "hotel.cancel"]
                assert sent(timeline)[-4:] == undo, timeline
            finally:
                fleet.kill("hotel")
                await fleet.restart("hotel")
            return await trip_outcome(agency, saga_id)

    outcome = await both(trip_fleets, run)
    assert outcome["saga"] == ("FAILED", "book_hotel timed out")
    assert outcome["rows"] == {"flight": "CANCELLED", "hotel": "CANCELLED", "car": None}


# -- the shop ---------------------------------------------------------------------------------
async def row(fleet: Fleet, database: str, sql: str, key: str) -> tuple[Any, ...] | None:
    url = database_url(fleet.stack.database_url, fleet.settings.database(database))
    conn = await asyncpg.connect(url)
    try:
        found = await conn.fetchrow(sql, key)
    finally:
        await conn.close()
    return tuple(found) if found is not None else None


async def shop_outcome(shop: Shop, order_id: str, product: str, customer: str) -> Outcome:
    """Everything the order left behind, without its ids and times."""
    fleet = shop.fleet
    order = await shop.settled(order_id)
    r = await shop.http.get(f"{fleet.url('inventory')}/products/{product}")
    stock = r.json() if r.status_code == 200 else None
    money = await shop.get("payment", f"/customers/{customer}")
    timeline: dict[str, Any] = {}
    async with asyncio.timeout(20):  # the tracker may be a moment behind the order service
        while timeline.get("saga", {}).get("status") not in ("COMPLETED", "FAILED"):
            r = await shop.http.get(f"{fleet.url('orchestrator')}/sagas/{order_id}")
            timeline = r.json() if r.status_code == 200 else {}
            await asyncio.sleep(0.05)
    saga = timeline["saga"]
    await copies_agree(fleet, order_id, saga["status"])
    return {
        "order": (order["status"], order["reason"], order["amount_cents"], order["flow"]),
        "saga": (saga["definition"], saga["status"], saga["reason"]),
        "commands": steps(timeline),
        "stock": stock and (stock["available"], stock["reserved"], stock["sold"]),
        "money": (money["balance_cents"], money["charged_cents"], money["refunded_cents"]),
        "reservation": await row(
            fleet,
            "inventory",
            "SELECT status, quantity, amount_cents, reason FROM reservations WHERE order_id = $1",
            order_id,
        ),
        "payment": await row(
            fleet,
            "payments",
            "SELECT status, amount_cents, reason FROM payments WHERE order_id = $1",
            order_id,
        ),
    }


SHOP: dict[tuple[str, str], dict[str, Any]] = {
    # (flow, scenario): the order, and what the books say afterwards
    ("reserve-first", "success"): {"order": ("CONFIRMED", None, 500), "refunded": 0},
    ("reserve-first", "reserve_stock refused"): {
        "order": ("CANCELLED", "out of stock", None),
        "refunded": 0,
    },
    ("reserve-first", "take_payment refused"): {
        "order": ("CANCELLED", "insufficient funds", None),
        "refunded": 0,
    },
    ("reserve-first", "unknown product"): {"refunded": 0},
    ("pay-first", "success"): {"order": ("CONFIRMED", None, 500), "refunded": 0},
    ("pay-first", "take_payment refused"): {
        "order": ("CANCELLED", "insufficient funds", None),
        "refunded": 0,
    },
    ("pay-first", "sell_stock refused"): {
        "order": ("CANCELLED", "out of stock", None),
        "refunded": 500,  # the refund the seed left out
    },
    ("pay-first", "unknown product"): {"refunded": 0},
}


async def shop_scenario(shop: Shop, flow: str, scenario: str) -> Outcome:
    stock, balance, quantity = 10, 10_000, 2
    if scenario.endswith("stock refused"):
        stock = 1
    elif scenario == "take_payment refused":
        balance = 150
    product = await shop.product(stock=stock, price_cents=250)
    if scenario == "unknown product":
        product = "ghost"  # the same name in both modes: reasons name it
    customer = await shop.customer(balance)
    order_id = await shop.order(customer, product, quantity, flow=flow)
    return {**await shop_outcome(shop, order_id, product, customer), "balance before": balance}


@pytest.mark.parametrize(("flow", "scenario"), SHOP, ids=[f"{f}-{s}" for f, s in SHOP])
async def test_shop(flow: str, scenario: str, shop_fleets: dict[Mode, Fleet]) -> None:
    async def run(fleet: Fleet) -> Outcome:
        async with httpx.AsyncClient(timeout=30) as client:
            return await shop_scenario(Shop(fleet, client), flow, scenario)

    outcome = await both(shop_fleets, run)
    expected = SHOP[flow, scenario]
    status, reason, amount, ran = outcome["order"]
    assert ran == flow
    if "order" in expected:
        assert (status, reason, amount) == expected["order"], outcome
    elif flow == "reserve-first":  # unknown product: refused where the stock is
        assert reason == "unknown product ghost", outcome
    else:  # pay-first charges first, at the price the order service knows
        assert reason == "no price known for ghost", outcome
    balance, charged, refunded = outcome["money"]
    assert refunded == expected["refunded"], outcome
    if status == "CONFIRMED":
        assert (balance, charged) == (outcome["balance before"] - 500, 500), outcome
        assert outcome["stock"] == (8, 0, 2), outcome
        assert outcome["reservation"][0] == "COMMITTED" and outcome["payment"][0] == "CHARGED"
    else:  # the customer has their money, and no stock is held or sold
        assert (balance, charged) == (outcome["balance before"], refunded), outcome
        if outcome["stock"] is not None:
            assert outcome["stock"][1:] == (0, 0), outcome


# flow: (the pivot's participant, its database, the pivot step, the row its handler updates)
PIVOT_PARTICIPANT = {
    "reserve-first": ("payment", "payments", "take_payment", "customers", "customer_id"),
    "pay-first": ("inventory", "inventory", "sell_stock", "products", "product_id"),
}


async def lock_waiters(conn: asyncpg.Connection) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    )


@pytest.mark.parametrize("flow", ["reserve-first", "pay-first"])
async def test_shop_participant_killed_mid_step(flow: str, shop_fleets: dict[Mode, Fleet]) -> None:
    """The pivot's participant is SIGKILLed inside its handler's transaction (the test holds
    the row the handler updates, so the handler waits on it) and restarted: its uncommitted
    work is gone, the command is delivered again, the saga completes, nothing is doubled."""
    victim, database, step, table, column = PIVOT_PARTICIPANT[flow]

    async def run(fleet: Fleet) -> Outcome:
        async with httpx.AsyncClient(timeout=30) as client:
            shop = Shop(fleet, client)
            product = await shop.product(stock=10, price_cents=250)
            customer = await shop.customer(10_000)
            held = customer if table == "customers" else product
            url = database_url(fleet.stack.database_url, fleet.settings.database(database))
            holder = await asyncpg.connect(url)
            try:
                async with holder.transaction():
                    await holder.execute(
                        f"SELECT 1 FROM {table} WHERE {column} = $1 FOR UPDATE", held
                    )
                    order_id = await shop.order(customer, product, 2, flow=flow)
                    async with asyncio.timeout(30):  # the handler is in, waiting on the row
                        while not await lock_waiters(holder):
                            await asyncio.sleep(0.02)
                    r = await client.get(f"{fleet.url('orchestrator')}/sagas/{order_id}")
                    assert r.json()["saga"]["members"][step]["progress"] == "sent"
                    fleet.kill(victim)
                # The row is free: the dead handler's backend takes it, finds its client
                # gone, and rolls back (its transaction was never committed).
                async with asyncio.timeout(30):
                    while await lock_waiters(holder):
                        await asyncio.sleep(0.02)
            finally:
                await holder.close()
                fleet.kill(victim)
                await fleet.restart(victim)
            return await shop_outcome(shop, order_id, product, customer)

    outcome = await both(shop_fleets, run)
    assert outcome["order"] == ("CONFIRMED", None, 500, flow), outcome
    assert outcome["stock"] == (8, 0, 2)
    assert outcome["money"] == (9_500, 500, 0)


@pytest.mark.parametrize("flow", ["reserve-first", "pay-first"])
async def test_shop_participant_down_past_its_timeouts(
    flow: str, shop_fleets: dict[Mode, Fleet]
) -> None:
    """The pivot's participant is down for longer than its step's attempts (5 s, then 10 s,
    then 20 s): the step times out, the saga turns back and waits for that participant to
    undo whatever it may have done (a refund; a restock of a sale); once it is back the
    order is cancelled, and neither stock nor money is held.

    Here the rows may differ in one way, and only orchestrated: the restarted participant
    finds the command and its compensation waiting on two topics, and may take either first
    (a charge then its refund, or a refund that leaves a tombstone and the charge declined).
    Choreographed, both are on the saga's topic, in order. What each row holds is compared."""
    victim, _, step, _, _ = PIVOT_PARTICIPANT[flow]

    async def run(fleet: Fleet) -> Outcome:
        async with httpx.AsyncClient(timeout=30) as client:
            shop = Shop(fleet, client)
            product = await shop.product(stock=10, price_cents=250)
            customer = await shop.customer(10_000)
            fleet.kill(victim)
            try:
                order_id = await shop.order(customer, product, 2, flow=flow)
                async with asyncio.timeout(90):
                    while True:
                        r = await client.get(f"{fleet.url('orchestrator')}/sagas/{order_id}")
                        saga = r.json()["saga"] if r.status_code == 200 else {}
                        if saga.get("status") == "COMPENSATING":
                            break
                        await asyncio.sleep(0.2)
                assert saga["reason"] == f"{step} timed out", saga
            finally:
                await fleet.restart(victim)
            found = await shop_outcome(shop, order_id, product, customer)
            money, stock = found.pop("payment"), found.pop("reservation")
            held = {"REFUNDED": "nothing", "VOIDED": "nothing", "RELEASED": "nothing"}
            found["holds"] = (
                money and held.get(money[0], money[0]),
                stock and held.get(stock[0], stock[0]),
            )
            balance, charged, refunded = found["money"]
            found["money"] = (balance, charged - refunded)  # kept, however it got there
            return found

    outcome = await both(shop_fleets, run)
    assert outcome["holds"] == ("nothing", "nothing"), outcome
    assert outcome["order"] == ("CANCELLED", f"{step} timed out", None, flow), outcome
    assert outcome["saga"][1:] == ("FAILED", f"{step} timed out")
    assert outcome["stock"] == (10, 0, 0)
    assert outcome["money"] == (10_000, 0), outcome
