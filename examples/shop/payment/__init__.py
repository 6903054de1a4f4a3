"""The payment service: customer balances, charges and refunds."""

from __future__ import annotations

from examples.shop import SERVICE_DATABASES
from examples.shop.messages import OrderDetails, Placed
from examples.shop.payment import money
from examples.shop.payment.api import routes
from examples.shop.saga import FLOWS
from sagakit import MessageContext, Service

service = Service(
    "payment",
    database=SERVICE_DATABASES["payment"],
    migrations="examples.shop.payment",
    sagas=FLOWS,
    routes=routes,
)


@service.handles("payment.process", Placed)
async def process(ctx: MessageContext, cmd: Placed) -> None:
    """Charge the order's amount: priced by the stock's reservation (reserve-first) or by
    the order service's replica of prices (pay-first), which may not know the product."""
    if cmd.amount_cents is None:
        await ctx.reply("payment.failed", {"reason": f"no price known for {cmd.product_id}"})
        return
    outcome = await money.charge(ctx.tx, cmd.order_id, cmd.customer_id, cmd.amount_cents)
    if outcome.ok:
        await ctx.reply("payment.success")
    else:
        await ctx.reply("payment.failed", {"reason": outcome.reason})


@service.handles("payment.refund", OrderDetails)
async def refund(ctx: MessageContext, cmd: OrderDetails) -> None:
    await money.refund(ctx.tx, cmd.order_id, cmd.customer_id)
    await ctx.reply("payment.refunded")
