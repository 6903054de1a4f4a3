"""The demo's and the benchmark's shop: products, customers, and a mix of orders that takes
every path of the saga."""

from __future__ import annotations

import random
from dataclasses import dataclass

from examples.shop.loadgen.client import ShopClient

PATHS = ("success", "out of stock", "declined payment")
EXPECTED = {
    "success": ("CONFIRMED", None),
    "out of stock": ("CANCELLED", "out of stock"),
    "declined payment": ("CANCELLED", "insufficient funds"),
}


@dataclass(frozen=True)
class Shop:
    ample: tuple[str, ...]
    scarce: str
    rich: tuple[str, ...]
    poor: tuple[str, ...]


async def seed(client: ShopClient, *, products: int = 8, customers: int = 40) -> Shop:
    shop = Shop(
        ample=tuple(f"widget-{i}" for i in range(products)),
        scarce="rare-gem",
        rich=tuple(f"customer-{i}" for i in range(customers)),
        poor=tuple(f"broke-{i}" for i in range(max(1, customers // 8))),
    )
    for pid in shop.ample:
        await client.product(pid, stock=10**9, price_cents=250)
    await client.product(shop.scarce, stock=10, price_cents=1_000)
    for cid in shop.rich:
        await client.customer(cid, balance_cents=10**12)
    for cid in shop.poor:
        await client.customer(cid, balance_cents=100)
    await client.wait_for_prices([*shop.ample, shop.scarce])
    return shop


def pick(shop: Shop, rng: random.Random, *, failures: float) -> tuple[str, str, int, str]:
    """(customer, product, quantity, path): a share ``failures`` of orders fails, half for
    stock (more than the scarce product ever had), half for money."""
    roll = rng.random()
    if roll < failures / 2:
        return rng.choice(shop.rich), shop.scarce, 20, "out of stock"
    if roll < failures:
        return rng.choice(shop.poor), rng.choice(shop.ample), 1, "declined payment"
    return rng.choice(shop.rich), rng.choice(shop.ample), rng.randint(1, 3), "success"
