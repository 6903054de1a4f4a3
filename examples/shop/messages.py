"""Payloads of the order flow's messages, shared by every service and both modes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class OrderRef(BaseModel):
    """Every order-flow message names its order (which is also the saga id and the key)."""

    model_config = ConfigDict(extra="ignore")

    order_id: str = Field(min_length=1)


class OrderDetails(OrderRef):
    customer_id: str
    product_id: str
    quantity: int = Field(gt=0)
    reason: str | None = None
    """Why the saga is compensating, when it is."""


class Priced(OrderDetails):
    amount_cents: int = Field(ge=0)


class Placed(OrderDetails):
    """``order.created``: the amount is known when the order service has the product's
    price (replicated from ``product.updated``); None otherwise."""

    amount_cents: int | None = Field(default=None, ge=0)


class ProductPriced(BaseModel):
    """``product.updated``: inventory announces a product's price."""

    product_id: str
    price_cents: int = Field(ge=0)
    version: int = Field(default=0, ge=0)
    """Bumped by every change of the product: replicas keep the newest only."""


class Outcome(OrderRef):
    reason: str | None = None
    amount_cents: int | None = None
