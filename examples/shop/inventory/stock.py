"""Inventory's local transactions. Each is idempotent per order and returns the outcome to
report, so a re-sent or redelivered command gets the same answer as the first."""

from __future__ import annotations

from dataclasses import dataclass

from examples.shop.faults import injected
from sagakit import Connection, SagakitError


@dataclass(frozen=True)
class Outcome:
    ok: bool
    amount_cents: int = 0
    reason: str | None = None


async def reserve(tx: Connection, order_id: str, product_id: str, quantity: int) -> Outcome:
    row = await tx.fetchrow(
        "SELECT status, amount_cents, reason FROM reservations WHERE order_id = $1 FOR UPDATE",
        order_id,
    )
    if row is not None:
        if row["status"] in ("RESERVED", "COMMITTED"):
            return Outcome(True, row["amount_cents"])
        return Outcome(False, reason=row["reason"] or "reservation cancelled")
    if injected("inventory", order_id):
        return await _refuse(tx, order_id, product_id, quantity, "injected failure")
    price = await tx.fetchval(
        "UPDATE products SET available = available - $2, reserved = reserved + $2"
        " WHERE product_id = $1 AND available >= $2 RETURNING price_cents",
        product_id,
        quantity,
    )
    if price is None:
        exists = await tx.fetchval("SELECT 1 FROM products WHERE product_id = $1", product_id)
        reason = "out of stock" if exists else f"unknown product {product_id}"
        return await _refuse(tx, order_id, product_id, quantity, reason)
    amount = int(price) * quantity
    await tx.execute(
        "INSERT INTO reservations (order_id, product_id, quantity, amount_cents, status)"
        " VALUES ($1, $2, $3, $4, 'RESERVED')",
        order_id,
        product_id,
        quantity,
        amount,
    )
    return Outcome(True, amount)


async def _refuse(
    tx: Connection, order_id: str, product_id: str, quantity: int, reason: str
) -> Outcome:
    await tx.execute(
        "INSERT INTO reservations (order_id, product_id, quantity, status, reason)"
        " VALUES ($1, $2, $3, 'REFUSED', $4)",
        order_id,
        product_id,
        quantity,
        reason,
    )
    return Outcome(False, reason=reason)


async def release(tx: Connection, order_id: str, product_id: str, *, sold: bool = False) -> None:
    """Give reserved stock back; with ``sold``, sold stock too (pay-first's undo of a sale
    whose answer never came). Nothing reserved: leave a tombstone so that a late
    reservation for this order is refused."""
    row = await tx.fetchrow(
        "SELECT status, product_id, quantity FROM reservations WHERE order_id = $1 FOR UPDATE",
        order_id,
    )
    if row is None:
        await tx.execute(
            "INSERT INTO reservations (order_id, product_id, quantity, status, reason)"
            " VALUES ($1, $2, 0, 'RELEASED', 'released before reserved')",
            order_id,
            product_id,
        )
        return
    if row["status"] == "COMMITTED" and not sold:
        raise SagakitError(f"order {order_id}: stock already sold, cannot release")
    if row["status"] not in ("RESERVED", "COMMITTED"):
        return
    held = "reserved" if row["status"] == "RESERVED" else "sold"
    await tx.execute(
        f"UPDATE products SET available = available + $2, {held} = {held} - $2"
        " WHERE product_id = $1",
        row["product_id"],
        row["quantity"],
    )
    await tx.execute(
        "UPDATE reservations SET status = 'RELEASED', updated_at = now() WHERE order_id = $1",
        order_id,
    )


async def complete(tx: Connection, order_id: str) -> None:
    """Reserved stock becomes sold."""
    row = await tx.fetchrow(
        "SELECT status, product_id, quantity FROM reservations WHERE order_id = $1 FOR UPDATE",
        order_id,
    )
    if row is None or row["status"] in ("REFUSED", "RELEASED"):
        state = row["status"] if row else "missing"
        raise SagakitError(f"order {order_id}: cannot complete a {state} reservation")
    if row["status"] == "COMMITTED":
        return
    await tx.execute(
        "UPDATE products SET reserved = reserved - $2, sold = sold + $2 WHERE product_id = $1",
        row["product_id"],
        row["quantity"],
    )
    await tx.execute(
        "UPDATE reservations SET status = 'COMMITTED', updated_at = now() WHERE order_id = $1",
        order_id,
    )
