"""HTTP client of the shop: seed products and customers, place orders."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from examples.shop.loadgen.rawhttp import RawHTTP


@dataclass(frozen=True)
class Placed:
    order_id: str
    path: str
    """Which scenario the order was meant to exercise."""
    sent_at: float


class ShopClient:
    def __init__(self, urls: dict[str, str], *, connections: int = 64) -> None:
        self.urls = urls
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self.http = httpx.AsyncClient(timeout=30, limits=limits)
        self._orders = RawHTTP(urls["order"], connections=connections)

    async def close(self) -> None:
        await self.http.aclose()
        await self._orders.close()

    async def product(self, product_id: str, stock: int, price_cents: int) -> None:
        r = await self.http.put(
            f"{self.urls['inventory']}/products/{product_id}",
            json={"stock": stock, "price_cents": price_cents},
        )
        r.raise_for_status()

    async def customer(self, customer_id: str, balance_cents: int) -> None:
        r = await self.http.put(
            f"{self.urls['payment']}/customers/{customer_id}",
            json={"balance_cents": balance_cents},
        )
        r.raise_for_status()

    async def wait_for_prices(self, product_ids: list[str], timeout: float = 30) -> None:
        """Prices reach the order service as events; wait until all have."""
        async with asyncio.timeout(timeout):
            for pid in product_ids:
                while (await self.http.get(f"{self.urls['order']}/catalog/{pid}")).is_error:
                    await asyncio.sleep(0.02)

    async def order(self, customer: str, product: str, quantity: int, path: str) -> Placed:
        sent = time.time()
        body = {"customer_id": customer, "product_id": product, "quantity": quantity}
        status, reply = await self._orders.request("POST", "/orders", body)
        if status != 202:
            raise RuntimeError(f"POST /orders answered {status}: {reply}")
        return Placed(reply["order_id"], path, sent)
