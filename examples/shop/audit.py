"""``python -m examples.shop check``: the order flow's invariants, audited across the
service databases.

- stock is conserved per product: initial = available + reserved + sold;
- per customer, charged - refunded = the sum of their CONFIRMED orders' amounts (customers
  with a PENDING order are skipped: their saga is still moving money);
- each CONFIRMED order has exactly one kept payment of its amount and one committed
  reservation;
- each CANCELLED order holds no stock and no money.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import asyncpg

from sagakit import SagakitError, Settings
from sagakit.dev import database_url


@dataclass
class AuditReport:
    orders: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.violations


async def _fetch(url: str, sql: str) -> list[asyncpg.Record]:
    try:
        conn = await asyncpg.connect(url)
    except asyncpg.InvalidCatalogNameError:
        name = url.rsplit("/", 1)[-1].split("?")[0]
        raise SagakitError(
            f"database {name} does not exist: run the shop first (python -m examples.shop up)"
        ) from None
    except (OSError, asyncpg.PostgresError) as exc:
        raise SagakitError(f"PostgreSQL unreachable: {exc}") from None
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def audit(server_url: str, settings: Settings) -> AuditReport:
    def db(name: str) -> str:
        return database_url(server_url, settings.database(name))

    report = AuditReport()
    orders = await _fetch(
        db("orders"), "SELECT order_id, customer_id, status, amount_cents FROM orders"
    )
    products = await _fetch(db("inventory"), "SELECT * FROM products")
    reservations = await _fetch(db("inventory"), "SELECT order_id, status FROM reservations")
    customers = await _fetch(db("payments"), "SELECT * FROM customers")
    payments = await _fetch(
        db("payments"), "SELECT order_id, customer_id, status, amount_cents FROM payments"
    )
    v = report.violations
    report.orders.update(o["status"] for o in orders)

    for p in products:
        held = p["available"] + p["reserved"] + p["sold"]
        if held != p["initial"]:
            v.append(
                f"product {p['product_id']}: initial {p['initial']} != available"
                f" {p['available']} + reserved {p['reserved']} + sold {p['sold']}"
            )

    reservation = {r["order_id"]: r["status"] for r in reservations}
    payment = {p["order_id"]: p for p in payments}
    confirmed_total: Counter[str] = Counter()
    pending_customers = {o["customer_id"] for o in orders if o["status"] == "PENDING"}
    for o in orders:
        oid, status = o["order_id"], o["status"]
        pay, res = payment.get(oid), reservation.get(oid)
        if status == "CONFIRMED":
            confirmed_total[o["customer_id"]] += o["amount_cents"] or 0
            if pay is None or pay["status"] != "CHARGED":
                v.append(f"order {oid} CONFIRMED but payment is {pay['status'] if pay else None}")
            elif pay["amount_cents"] != o["amount_cents"]:
                v.append(
                    f"order {oid} CONFIRMED for {o['amount_cents']} but charged"
                    f" {pay['amount_cents']}"
                )
            if res != "COMMITTED":
                v.append(f"order {oid} CONFIRMED but reservation is {res}")
        elif status == "CANCELLED":
            if pay is not None and pay["status"] == "CHARGED":
                v.append(f"order {oid} CANCELLED but its payment is still CHARGED")
            if res in ("RESERVED", "COMMITTED"):
                v.append(f"order {oid} CANCELLED but its stock is {res}")

    for c in customers:
        cid = c["customer_id"]
        if cid in pending_customers:
            continue
        kept = c["charged_cents"] - c["refunded_cents"]
        if kept != confirmed_total[cid]:
            v.append(
                f"customer {cid}: charged - refunded = {kept} but confirmed orders"
                f" total {confirmed_total[cid]}"
            )
    return report
