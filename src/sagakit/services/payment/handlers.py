"""Payment's message handlers, wired per saga mode."""

from __future__ import annotations

from sagakit.messaging import MessageContext, Router
from sagakit.services.host import Mode
from sagakit.services.messages import OrderDetails, Priced
from sagakit.services.payment import money


def router(mode: Mode, namespace: str) -> Router:
    r = Router(namespace)
    r.add("payment.process", process, Priced)
    r.add("payment.refund", refund, OrderDetails)
    return r


async def process(ctx: MessageContext, cmd: Priced) -> None:
    outcome = await money.charge(ctx.tx, cmd.order_id, cmd.customer_id, cmd.amount_cents)
    if outcome.ok:
        await ctx.publish("payment.success", cmd.model_dump())
    else:
        await ctx.publish("payment.failed", {**cmd.model_dump(), "reason": outcome.reason})


async def refund(ctx: MessageContext, cmd: OrderDetails) -> None:
    await money.refund(ctx.tx, cmd.order_id, cmd.customer_id)
    await ctx.publish("payment.refunded", cmd.model_dump())
