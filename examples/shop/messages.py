"""Payloads of the order flow's messages, shared by every service and both modes."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from sagakit import http

Cents = Annotated[http.Integer, Field(ge=0), WithJsonSchema({"type": "integer", "minimum": 0})]
"""An amount in cents: a JSON integer (``5.0`` too), never negative."""


class OrderRef(BaseModel):
    """Every order-flow message names its order (which is also the saga id and the key)."""

    model_config = ConfigDict(extra="ignore")

    order_id: http.Identifier


class OrderDetails(OrderRef):
    customer_id: http.Identifier
    product_id: http.Identifier
    quantity: http.Integer = Field(gt=0)
    reason: http.SafeText | None = None
    """Why the saga is compensating, when it is."""


class Priced(OrderDetails):
    amount_cents: http.Integer = Field(ge=0)


class Placed(OrderDetails):
    """``order.created``: the amount is known when the order service has the product's
    price (replicated from ``product.updated``); None otherwise."""

    amount_cents: Cents | None = None


class ProductPriced(BaseModel):
    """``product.updated``: inventory announces a product's price."""

    product_id: str
    price_cents: int = Field(ge=0)
    version: int = Field(default=0, ge=0)
    """Bumped by every change of the product: replicas keep the newest only."""


class Outcome(OrderRef):
    reason: str | None = None
    amount_cents: int | None = None
