"""Inventory's message handlers, wired per saga mode."""

from __future__ import annotations

from sagakit.messaging import MessageContext, Router
from sagakit.services.host import Mode
from sagakit.services.inventory import stock
from sagakit.services.messages import OrderDetails, OrderRef


def router(mode: Mode, namespace: str) -> Router:
    r = Router(namespace)
    r.add("inventory.reserve", reserve, OrderDetails)
    r.add("inventory.release", release, OrderDetails)
    r.add("inventory.complete", complete, OrderRef)
    return r


async def reserve(ctx: MessageContext, cmd: OrderDetails) -> None:
    outcome = await stock.reserve(ctx.tx, cmd.order_id, cmd.product_id, cmd.quantity)
    body = {**cmd.model_dump(), "amount_cents": outcome.amount_cents}
    if outcome.ok:
        await ctx.publish("inventory.reserved", body)
    else:
        await ctx.publish("inventory.failed", {**body, "reason": outcome.reason})


async def release(ctx: MessageContext, cmd: OrderDetails) -> None:
    await stock.release(ctx.tx, cmd.order_id, cmd.product_id)
    await ctx.publish("inventory.released", cmd.model_dump())


async def complete(ctx: MessageContext, cmd: OrderRef) -> None:
    await stock.complete(ctx.tx, cmd.order_id)
    await ctx.publish("inventory.completed", cmd.model_dump())
