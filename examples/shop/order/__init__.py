"""The order service: takes orders over HTTP and starts their sagas (in the flow each order
names), confirms or cancels them when its saga says so, and keeps a replica of prices.

Two ways to deploy it: ``service`` leaves the sagas to the orchestrator service;
``hosting`` orchestrates them itself, in its own database, so that the saga starts in the
transaction that stores the order and the order's own steps (confirm, cancel) run
in-process instead of as messages (``examples.shop.system.services``)."""

from __future__ import annotations

from examples.shop import SERVICE_DATABASES
from examples.shop.messages import Placed, ProductPriced
from examples.shop.order.api import default_flow, routes
from examples.shop.order.lifecycle import OrderStatus, transition
from examples.shop.order.stuck import watch
from examples.shop.saga import FLOWS
from sagakit import MessageContext, SagaDefinition, Service


async def confirm(ctx: MessageContext, cmd: Placed) -> None:
    await transition(ctx.tx, cmd.order_id, OrderStatus.CONFIRMED, amount_cents=cmd.amount_cents)
    await ctx.reply("order.confirmed")


async def cancel(ctx: MessageContext, cmd: Placed) -> None:
    await transition(ctx.tx, cmd.order_id, OrderStatus.CANCELLED, reason=cmd.reason)
    await ctx.reply("order.cancelled")


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


def _order_service(orchestrates: tuple[SagaDefinition, ...] = ()) -> Service:
    svc = Service(
        "order",
        database=SERVICE_DATABASES["order"],
        migrations="examples.shop.order",
        sagas=FLOWS,
        publishes=[d.starts_on for d in FLOWS],  # it starts them: their start topics exist early
        orchestrates=orchestrates,
        routes=routes,
        background=[watch],
    )
    svc.handles("order.confirm", Placed, replies=("order.confirmed",))(confirm)
    svc.handles("order.cancel", Placed, replies=("order.cancelled",))(cancel)
    svc.handles("product.updated", ProductPriced)(price_changed)
    return svc


service = _order_service()
hosting = _order_service(orchestrates=FLOWS)
"""The order service hosting the orchestrator of its sagas (orchestration only)."""
default_flow()  # a SHOP_FLOW that names no flow stops the service at start-up
