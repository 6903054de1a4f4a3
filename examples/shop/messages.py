"""Payloads of the order flows' messages, shared by every service, both flows and both modes.
A command carries the saga's data so far: the order as placed, and what replies added."""

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


class Placed(OrderDetails):
    """What an order saga starts with (and, grown by the replies, what each command
    carries). The amount is known when the order service has the product's price
    (replicated from ``product.updated``), else None; reserve-first prices the order when
    it reserves the stock."""

    amount_cents: Cents | None = None


class ProductPriced(BaseModel):
    """``product.updated``: inventory announces a product's price."""

    product_id: str
    price_cents: int = Field(ge=0)
    version: int = Field(default=0, ge=0)
    """Bumped by every change of the product: replicas keep the newest only."""


class Outcome(BaseModel):
    """What a participant answers: a failure's reason, the amount a reservation priced."""

    model_config = ConfigDict(extra="ignore")

    reason: http.SafeText | None = None
    amount_cents: Cents | None = None
