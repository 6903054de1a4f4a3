"""Payment's local transactions, idempotent per order."""

from __future__ import annotations

from dataclasses import dataclass

from examples.shop.faults import injected
from sagakit import Connection


@dataclass(frozen=True)
class Outcome:
    ok: bool
    reason: str | None = None


async def charge(tx: Connection, order_id: str, customer_id: str, amount: int) -> Outcome:
    row = await tx.fetchrow(
        "SELECT status, reason FROM payments WHERE order_id = $1 FOR UPDATE", order_id
    )
    if row is not None:
        if row["status"] == "CHARGED":
            return Outcome(True)
        return Outcome(False, row["reason"] or "payment cancelled")
    if injected("payment", order_id):
        return await _decline(tx, order_id, customer_id, amount, "injected failure")
    charged = await tx.fetchval(
        "UPDATE customers SET balance_cents = balance_cents - $2,"
        " charged_cents = charged_cents + $2"
        " WHERE customer_id = $1 AND balance_cents >= $2 RETURNING true",
        customer_id,
        amount,
    )
    if not charged:
        exists = await tx.fetchval("SELECT 1 FROM customers WHERE customer_id = $1", customer_id)
        reason = "insufficient funds" if exists else f"unknown customer {customer_id}"
        return await _decline(tx, order_id, customer_id, amount, reason)
    await tx.execute(
        "INSERT INTO payments (order_id, customer_id, amount_cents, status)"
        " VALUES ($1, $2, $3, 'CHARGED')",
        order_id,
        customer_id,
        amount,
    )
    return Outcome(True)


async def _decline(
    tx: Connection, order_id: str, customer_id: str, amount: int, reason: str
) -> Outcome:
    await tx.execute(
        "INSERT INTO payments (order_id, customer_id, amount_cents, status, reason)"
        " VALUES ($1, $2, $3, 'DECLINED', $4)",
        order_id,
        customer_id,
        amount,
        reason,
    )
    return Outcome(False, reason)


async def refund(tx: Connection, order_id: str, customer_id: str) -> None:
    """Give a charge back. Nothing charged: leave a tombstone so that a late charge for this
    order is declined."""
    row = await tx.fetchrow(
        "SELECT status, customer_id, amount_cents FROM payments WHERE order_id = $1 FOR UPDATE",
        order_id,
    )
    if row is None:
        await tx.execute(
            "INSERT INTO payments (order_id, customer_id, amount_cents, status, reason)"
            " VALUES ($1, $2, 0, 'VOIDED', 'refunded before charged')",
            order_id,
            customer_id,
        )
        return
    if row["status"] != "CHARGED":
        return
    await tx.execute(
        "UPDATE customers SET balance_cents = balance_cents + $2,"
        " refunded_cents = refunded_cents + $2 WHERE customer_id = $1",
        row["customer_id"],
        row["amount_cents"],
    )
    await tx.execute(
        "UPDATE payments SET status = 'REFUNDED', updated_at = now() WHERE order_id = $1",
        order_id,
    )
