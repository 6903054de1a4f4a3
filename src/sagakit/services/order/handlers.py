"""The order service's message handlers, wired per saga mode."""

from __future__ import annotations

from sagakit.messaging import MessageContext, Router
from sagakit.services.host import Mode
from sagakit.services.messages import Outcome
from sagakit.services.order.lifecycle import OrderStatus, transition


def router(mode: Mode, namespace: str) -> Router:
    r = Router(namespace)
    r.add("order.confirm", confirm, Outcome)
    r.add("order.cancel", cancel, Outcome)
    return r


async def confirm(ctx: MessageContext, cmd: Outcome) -> None:
    await transition(ctx.tx, cmd.order_id, OrderStatus.CONFIRMED, amount_cents=cmd.amount_cents)
    await ctx.publish("order.confirmed", {"order_id": cmd.order_id})


async def cancel(ctx: MessageContext, cmd: Outcome) -> None:
    await transition(ctx.tx, cmd.order_id, OrderStatus.CANCELLED, reason=cmd.reason)
    await ctx.publish("order.cancelled", {"order_id": cmd.order_id})
