"""Inventory's message handlers, wired per saga mode."""

from __future__ import annotations

from examples.shop.inventory import stock
from examples.shop.messages import OrderDetails, OrderRef, Priced
from sagakit import MessageContext, Mode, Router


def router(mode: Mode, namespace: str) -> Router:
    r = Router(namespace)
    if mode is Mode.ORCHESTRATION:
        r.add("inventory.reserve", reserve, OrderDetails)
        r.add("inventory.release", release, OrderDetails)
        r.add("inventory.complete", complete, OrderRef)
    else:
        r.add("payment.charged", sell, Priced)
    return r


async def reserve(ctx: MessageContext, cmd: OrderDetails) -> None:
    outcome = await stock.reserve(ctx.tx, cmd.order_id, cmd.product_id, cmd.quantity)
    body = {**cmd.model_dump(), "amount_cents": outcome.amount_cents}
    if outcome.ok:
        await ctx.publish("inventory.reserved", body)
    else:
        await ctx.publish("inventory.failed", {**body, "reason": outcome.reason})


async def sell(ctx: MessageContext, event: Priced) -> None:
    """Choreography: the order is paid, so reserved stock is sold at once (nothing after
    this step can fail). Out of stock: ``inventory.failed``, and payment refunds."""
    outcome = await stock.reserve(ctx.tx, event.order_id, event.product_id, event.quantity)
    if outcome.ok:
        await stock.complete(ctx.tx, event.order_id)
        await ctx.publish("inventory.reserved", event.model_dump())
    else:
        await ctx.publish("inventory.failed", {**event.model_dump(), "reason": outcome.reason})


async def release(ctx: MessageContext, cmd: OrderDetails) -> None:
    await stock.release(ctx.tx, cmd.order_id, cmd.product_id)
    await ctx.publish("inventory.released", cmd.model_dump())


async def complete(ctx: MessageContext, cmd: OrderRef) -> None:
    await stock.complete(ctx.tx, cmd.order_id)
    await ctx.publish("inventory.completed", cmd.model_dump())
