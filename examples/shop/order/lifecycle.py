"""The order's state machine. Only these transitions exist; anything else (a late or
duplicate command) is refused, so an order cannot end up confirmed after it was cancelled.

    PENDING ──confirm──▶ CONFIRMED
       │
       └──cancel──▶ CANCELLED

While PENDING the order is locked by its saga (a semantic lock): nothing but the saga
changes it.
"""

from __future__ import annotations

from enum import StrEnum

from sagakit import Connection, SagakitError


class OrderStatus(StrEnum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    CANCELLED = "CANCELLED"

    @property
    def settled(self) -> bool:
        return self in (OrderStatus.CONFIRMED, OrderStatus.CANCELLED)


TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.CONFIRMED, OrderStatus.CANCELLED}),
    OrderStatus.CONFIRMED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
}


class IllegalTransition(SagakitError):
    """The event does not apply to the order's current state (never retried)."""


async def transition(
    tx: Connection,
    order_id: str,
    to: OrderStatus,
    *,
    reason: str | None = None,
    amount_cents: int | None = None,
) -> bool:
    """Move the order to ``to``. True if it moved, False if it already was there (a command
    sent again). Raises :class:`IllegalTransition` for anything else."""
    current = await tx.fetchval(
        "SELECT status FROM orders WHERE order_id = $1 FOR UPDATE", order_id
    )
    if current is None:
        raise IllegalTransition(f"no order {order_id}")
    if current == to:
        return False
    if to not in TRANSITIONS[OrderStatus(current)]:
        raise IllegalTransition(f"order {order_id}: {current} -> {to} is not allowed")
    await tx.execute(
        "UPDATE orders SET status = $2, reason = COALESCE($3, reason),"
        " amount_cents = COALESCE($4, amount_cents), updated_at = now() WHERE order_id = $1",
        order_id,
        to.value,
        reason,
        amount_cents,
    )
    return True
