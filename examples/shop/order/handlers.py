"""The order service's message handlers, wired per saga mode.

Orchestration: the orchestrator commands ``order.confirm`` / ``order.cancel``, and the order
service acknowledges. Choreography: the order service reacts to the other services' events.
In both modes it keeps a replica of product prices.
"""

from __future__ import annotations

from examples.shop.messages import Outcome, ProductPriced
from examples.shop.order.lifecycle import OrderStatus, transition
from sagakit import MessageContext, Mode, Router


def router(mode: Mode, namespace: str) -> Router:
    r = Router(namespace)
    r.add("product.updated", price_changed, ProductPriced)
    if mode is Mode.ORCHESTRATION:
        r.add("order.confirm", confirm, Outcome)
        r.add("order.cancel", cancel, Outcome)
    else:
        r.add("inventory.reserved", confirmed, Outcome)
        r.add("payment.failed", cancelled, Outcome)
        r.add("inventory.failed", cancelling, Outcome)
        r.add("payment.refunded", cancelled, Outcome)
    return r


async def price_changed(ctx: MessageContext, event: ProductPriced) -> None:
    """Apply only a newer version: events of one product can arrive out of order (a batch
    re-sent after a partial failure, a dead letter replayed later)."""
    await ctx.tx.execute(
        "INSERT INTO prices (product_id, price_cents, version) VALUES ($1, $2, $3)"
        " ON CONFLICT (product_id) DO UPDATE SET price_cents = EXCLUDED.price_cents,"
        " version = EXCLUDED.version, updated_at = now() WHERE prices.version < EXCLUDED.version"
        # events from before versions existed (0) replace each other as they always did
        " OR (prices.version = 0 AND EXCLUDED.version = 0)",
        event.product_id,
        event.price_cents,
        event.version,
    )


# -- orchestration: commands, acknowledged ----------------------------------------------
async def confirm(ctx: MessageContext, cmd: Outcome) -> None:
    await transition(ctx.tx, cmd.order_id, OrderStatus.CONFIRMED, amount_cents=cmd.amount_cents)
    await ctx.publish("order.confirmed", {"order_id": cmd.order_id})


async def cancel(ctx: MessageContext, cmd: Outcome) -> None:
    await transition(ctx.tx, cmd.order_id, OrderStatus.CANCELLED, reason=cmd.reason)
    await ctx.publish("order.cancelled", {"order_id": cmd.order_id})


# -- choreography: events, reacted to -----------------------------------------------------
async def confirmed(ctx: MessageContext, event: Outcome) -> None:
    await transition(ctx.tx, event.order_id, OrderStatus.CONFIRMED, amount_cents=event.amount_cents)


async def cancelling(ctx: MessageContext, event: Outcome) -> None:
    """Stock ran out after payment: wait for the refund before cancelling."""
    await transition(ctx.tx, event.order_id, OrderStatus.CANCELLING, reason=event.reason)


async def cancelled(ctx: MessageContext, event: Outcome) -> None:
    await transition(ctx.tx, event.order_id, OrderStatus.CANCELLED, reason=event.reason)
