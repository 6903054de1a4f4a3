"""The order's state machine. Only these transitions exist; anything else (a late, duplicate
or reordered event) is refused, so an order cannot end up confirmed after it was cancelled.

    PENDING ──confirm──▶ CONFIRMED
       │
       ├──cancel──▶ CANCELLED
       │                ▲
       └──cancelling──▶ CANCELLING ──(money back)──┘

CANCELLING (choreography only): stock ran out after the payment was taken; the order waits
for its refund before it is CANCELLED. An event that arrives after a later one superseded it
(``inventory.failed`` after the refund already cancelled the order) is ignored.

While PENDING or CANCELLING the order is locked by its saga (a semantic lock): nothing but
the saga's events changes it.
"""

from __future__ import annotations

from enum import StrEnum

from sagakit import Connection, SagakitError


class OrderStatus(StrEnum):
    PENDING = "PENDING"
    CANCELLING = "CANCELLING"
    CONFIRMED = "CONFIRMED"
    CANCELLED = "CANCELLED"

    @property
    def settled(self) -> bool:
        return self in (OrderStatus.CONFIRMED, OrderStatus.CANCELLED)


TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset(
        {OrderStatus.CONFIRMED, OrderStatus.CANCELLING, OrderStatus.CANCELLED}
    ),
    OrderStatus.CANCELLING: frozenset({OrderStatus.CANCELLED}),
    OrderStatus.CONFIRMED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
}

SUPERSEDED: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.CANCELLED: frozenset({OrderStatus.CANCELLING}),
}
"""Targets that a state has already gone past: moving there again is a late event."""


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
    """Move the order to ``to``. True if it moved, False if it already was there or past it
    (a duplicate or late event). Raises :class:`IllegalTransition` for anything else."""
    current = await tx.fetchval(
        "SELECT status FROM orders WHERE order_id = $1 FOR UPDATE", order_id
    )
    if current is None:
        raise IllegalTransition(f"no order {order_id}")
    if current == to or to in SUPERSEDED.get(OrderStatus(current), ()):
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
