"""End-to-end fixtures: the services as separate processes on the session's stack, in a
namespace of their own (topics, groups, databases), once per saga mode."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from examples.shop.system import services
from examples.trip.system import SERVICES as TRIP_SERVICES

from sagakit.config import Settings
from sagakit.devstack import StackInfo
from sagakit.devstack.processes import free_port
from sagakit.fleet import Fleet
from sagakit.runtime.host import Mode

MODES = [Mode.ORCHESTRATION, Mode.CHOREOGRAPHY]


def shop_fleet(stack: StackInfo, mode: Mode, log_dir: Path, *, host: str = "orchestrator") -> Fleet:
    """The shop's four services in ``mode``, in a namespace of their own (orchestrated, the
    orchestrator runs twice: replicas must not double anything). ``host="order"``: three,
    the order service orchestrating (and running twice)."""
    settings = Settings(
        namespace=f"e2e{uuid.uuid4().hex[:8]}",
        session_timeout_ms=3000,
        fetch_max_wait_ms=20,
    )
    names = services(host)
    ports = {name: free_port() for name in names}
    replicas = {host: 2} if mode is Mode.ORCHESTRATION else {}
    if replicas:  # the second orchestrator takes its port + 10
        ports[host] = free_port_base(10)
    return Fleet(
        stack,
        settings,
        names,
        ports,
        mode=mode,
        env={"SAGAKIT_STUCK_AFTER_S": "2"},
        replicas=replicas,
        log_dir=log_dir,
    )


@contextlib.asynccontextmanager
async def started(fleets: dict[Mode, Fleet]) -> AsyncIterator[dict[Mode, Fleet]]:
    """Both modes' fleets, started side by side, stopped at the end."""
    try:
        await asyncio.gather(*(f.start(timeout=120) for f in fleets.values()))
        yield fleets
    finally:
        for f in fleets.values():
            f.stop()


@pytest.fixture(scope="session")
async def shop_fleets(
    stack: StackInfo, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[Mode, Fleet]]:
    """The shop in each mode, both up for the rest of the session: a scenario can run in
    both and compare what each left behind."""
    fleets = {
        m: shop_fleet(stack, m, Path(tmp_path_factory.mktemp(f"logs-{m.value}"))) for m in MODES
    }
    async with started(fleets) as up:
        yield up


@pytest.fixture(scope="session")
async def hosted_fleet(
    stack: StackInfo, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Fleet]:
    """The shop orchestrated by its order service (started when a test first asks)."""
    fleet = shop_fleet(
        stack, Mode.ORCHESTRATION, Path(tmp_path_factory.mktemp("logs-hosted")), host="order"
    )
    async with started({Mode.ORCHESTRATION: fleet}):
        yield fleet


def trip_fleet(
    stack: StackInfo, mode: Mode, log_dir: Path, env: dict[str, str] | None = None
) -> Fleet:
    """The trip's four services in ``mode``, in a namespace of their own."""
    settings = Settings(
        namespace=f"trip{uuid.uuid4().hex[:8]}", session_timeout_ms=3000, fetch_max_wait_ms=20
    )
    ports = {name: free_port() for name in TRIP_SERVICES}
    return Fleet(stack, settings, TRIP_SERVICES, ports, mode=mode, env=env or {}, log_dir=log_dir)


@pytest.fixture(scope="session")
async def trip_fleets(
    stack: StackInfo, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[Mode, Fleet]]:
    """The trip's services in each mode: orchestrated by the agency, or choreographed from
    the same definition (the agency then tracks the sagas: timeline, timers, HTTP)."""
    fleets = {
        m: trip_fleet(stack, m, Path(tmp_path_factory.mktemp(f"trip-logs-{m.value}")))
        for m in MODES
    }
    async with started(fleets) as up:
        yield up


@pytest.fixture(params=MODES, ids=lambda m: m.value)
def fleet(request: pytest.FixtureRequest, shop_fleets: dict[Mode, Fleet]) -> Fleet:
    return shop_fleets[request.param]


def free_port_base(*offsets: int) -> int:
    """A free port p such that p + each offset is free too."""
    for _ in range(200):
        base = free_port()
        try:
            for offset in offsets:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise RuntimeError(f"no free port with offsets {offsets} free too")


class Shop:
    """A thin client of the services' HTTP APIs."""

    def __init__(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        self.fleet = fleet
        self.http = client

    async def product(self, stock: int, price_cents: int) -> str:
        pid = f"p-{uuid.uuid4().hex[:8]}"
        r = await self.http.put(
            f"{self.fleet.url('inventory')}/products/{pid}",
            json={"stock": stock, "price_cents": price_cents},
        )
        r.raise_for_status()
        await self.price_known(pid)
        return pid

    async def price_known(self, product: str, timeout: float = 30) -> None:
        """Prices reach the order service as events: wait until this one has."""
        async with asyncio.timeout(timeout):
            while (await self.http.get(f"{self.fleet.url('order')}/catalog/{product}")).is_error:
                await asyncio.sleep(0.02)

    async def customer(self, balance_cents: int) -> str:
        cid = f"c-{uuid.uuid4().hex[:8]}"
        r = await self.http.put(
            f"{self.fleet.url('payment')}/customers/{cid}", json={"balance_cents": balance_cents}
        )
        r.raise_for_status()
        return cid

    async def order(
        self,
        customer: str,
        product: str,
        quantity: int,
        key: str | None = None,
        flow: str | None = None,
    ) -> str:
        headers = {"Idempotency-Key": key} if key else {}
        body: dict[str, object] = {
            "customer_id": customer,
            "product_id": product,
            "quantity": quantity,
        }
        if flow is not None:
            body["flow"] = flow
        r = await self.http.post(f"{self.fleet.url('order')}/orders", json=body, headers=headers)
        assert r.status_code == 202, r.text
        if key is None:  # (a retry may find the order already settled)
            assert r.json()["status"] == "PENDING"
        return str(r.json()["order_id"])

    async def get(self, service: str, path: str) -> dict[str, object]:
        r = await self.http.get(f"{self.fleet.url(service)}{path}")
        r.raise_for_status()
        body: dict[str, object] = r.json()
        return body

    async def settled(self, order_id: str, timeout: float = 90) -> dict[str, object]:
        """Wait until the order is CONFIRMED or CANCELLED; return it."""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    order = await self.get("order", f"/orders/{order_id}")
                except httpx.TransportError:  # a pooled connection to a killed process
                    await asyncio.sleep(0.05)
                    continue
                if order["status"] != "PENDING":
                    return order
                await asyncio.sleep(0.05)


@pytest.fixture
async def shop(fleet: Fleet) -> AsyncIterator[Shop]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield Shop(fleet, client)
