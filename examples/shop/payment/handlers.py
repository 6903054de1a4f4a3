"""Payment's message handlers, wired per saga mode."""

from __future__ import annotations

from examples.shop.messages import OrderDetails, Placed, Priced
from examples.shop.payment import money
from sagakit import MessageContext, Mode, Router


def router(mode: Mode, namespace: str) -> Router:
    r = Router(namespace)
    if mode is Mode.ORCHESTRATION:
        r.add("payment.process", process, Priced)
        r.add("payment.refund", refund, OrderDetails)
    else:
        r.add("order.created", charge_order, Placed)
        r.add("inventory.failed", refund, OrderDetails)
    return r


async def process(ctx: MessageContext, cmd: Priced) -> None:
    """Orchestration: charge on command, reply success or failure."""
    outcome = await money.charge(ctx.tx, cmd.order_id, cmd.customer_id, cmd.amount_cents)
    if outcome.ok:
        await ctx.publish("payment.success", cmd.model_dump())
    else:
        await ctx.publish("payment.failed", {**cmd.model_dump(), "reason": outcome.reason})


async def charge_order(ctx: MessageContext, event: Placed) -> None:
    """Choreography: a new order is charged first; stock is reserved once it is paid."""
    if event.amount_cents is None:
        reason = f"no price known for {event.product_id}"
        await ctx.publish("payment.failed", {**event.model_dump(), "reason": reason})
        return
    priced = Priced(**{**event.model_dump(), "amount_cents": event.amount_cents})
    outcome = await money.charge(ctx.tx, priced.order_id, priced.customer_id, priced.amount_cents)
    if outcome.ok:
        await ctx.publish("payment.charged", priced.model_dump())
    else:
        await ctx.publish("payment.failed", {**priced.model_dump(), "reason": outcome.reason})


async def refund(ctx: MessageContext, cmd: OrderDetails) -> None:
    """Give the money back (orchestration: on command; choreography: when stock ran out)."""
    await money.refund(ctx.tx, cmd.order_id, cmd.customer_id)
    await ctx.publish("payment.refunded", cmd.model_dump())
