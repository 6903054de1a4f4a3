"""The inventory service: stock per product, reserved for orders, then sold or released."""

from __future__ import annotations

from examples.shop import SERVICE_DATABASES
from examples.shop.inventory import stock
from examples.shop.inventory.api import routes
from examples.shop.messages import OrderDetails, OrderRef
from examples.shop.saga import FLOWS
from sagakit import MessageContext, Service

service = Service(
    "inventory",
    database=SERVICE_DATABASES["inventory"],
    migrations="examples.shop.inventory",
    sagas=FLOWS,
    publishes=["product.updated"],
    routes=routes,
)


@service.handles("inventory.reserve", OrderDetails)
async def reserve(ctx: MessageContext, cmd: OrderDetails) -> None:
    """Reserve-first: hold the stock, and price the order (the reply's amount is charged)."""
    outcome = await stock.reserve(ctx.tx, cmd.order_id, cmd.product_id, cmd.quantity)
    if outcome.ok:
        await ctx.reply("inventory.reserved", {"amount_cents": outcome.amount_cents})
    else:
        await ctx.reply("inventory.failed", {"reason": outcome.reason})


@service.handles("inventory.sell", OrderDetails)
async def sell(ctx: MessageContext, cmd: OrderDetails) -> None:
    """Pay-first: the order is paid, so the stock is reserved and sold at once."""
    outcome = await stock.reserve(ctx.tx, cmd.order_id, cmd.product_id, cmd.quantity)
    if outcome.ok:
        await stock.complete(ctx.tx, cmd.order_id)
        await ctx.reply("inventory.sold")
    else:
        await ctx.reply("inventory.failed", {"reason": outcome.reason})


@service.handles("inventory.release", OrderDetails)
async def release(ctx: MessageContext, cmd: OrderDetails) -> None:
    """Reserve-first's undo of a reservation (a sold reservation is never released)."""
    await stock.release(ctx.tx, cmd.order_id, cmd.product_id)
    await ctx.reply("inventory.released")


@service.handles("inventory.restock", OrderDetails)
async def restock(ctx: MessageContext, cmd: OrderDetails) -> None:
    """Pay-first's undo of a sale: sold (or reserved) stock goes back."""
    await stock.release(ctx.tx, cmd.order_id, cmd.product_id, sold=True)
    await ctx.reply("inventory.restocked")


@service.handles("inventory.complete", OrderRef)
async def complete(ctx: MessageContext, cmd: OrderRef) -> None:
    await stock.complete(ctx.tx, cmd.order_id)
    await ctx.reply("inventory.completed")
