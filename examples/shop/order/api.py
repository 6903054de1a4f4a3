"""The order service's HTTP API: place orders (starting a saga) and read them."""

from __future__ import annotations

import functools
import os
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Header, HTTPException, Query, Request
from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema

from examples.shop.order.lifecycle import OrderStatus
from examples.shop.order.stuck import STUCK, stuck_after
from examples.shop.saga import Flow
from sagakit import ConfigError, Runtime, http

routes = APIRouter()


class OrderIn(http.StrictBody):
    customer_id: http.Identifier
    product_id: http.Identifier
    quantity: http.Integer = Field(gt=0, le=1_000_000)
    flow: Flow | None = Field(
        default=None,
        strict=False,  # its JSON string names the member
        description="the saga that runs the order; default: the service's SHOP_FLOW",
    )


class OrderAccepted(BaseModel):
    order_id: str
    status: OrderStatus
    flow: Flow


class OrderOut(BaseModel):
    order_id: str
    status: OrderStatus
    reason: str | None = None
    customer_id: str
    product_id: str
    quantity: int
    amount_cents: int | None = None
    flow: Flow
    created_at: datetime
    updated_at: datetime


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR = rf"^(-?[0-9]{{1,16}})\|({http.PRINTABLE}{{1,200}})$"

Cursor = Annotated[
    str,
    AfterValidator(http.printable),
    WithJsonSchema({"type": "string", "pattern": _CURSOR}),
]
"""Where a page ended: ``<created_at in microseconds since 1970>|<order_id>``. Every string
of this form is a cursor (16 digits reach past the year 2200), so the documented pattern is
the whole rule."""


class OrderPage(BaseModel):
    orders: list[OrderOut]
    next_cursor: str | None = Field(
        description="pass as ?after= for the next page", json_schema_extra={"pattern": _CURSOR}
    )


def _out(row: asyncpg.Record) -> OrderOut:
    return OrderOut(**{k: row[k] for k in OrderOut.model_fields})


@routes.post(
    "/orders",
    status_code=202,
    response_model=OrderAccepted,
    responses={
        **http.links(
            202,
            GetOrder=http.link(
                "get_order", "the order just placed", order_id="$response.body#/order_id"
            ),
        ),
        **http.problems(
            409,
            503,
            body=True,
            descriptions={409: "This customer used the Idempotency-Key for a different order."},
        ),
    },
)
async def place_order(
    body: OrderIn,
    request: Request,
    idempotency_key: Annotated[
        http.IdempotencyKey | None,
        Header(description="makes a retry safe: one order per key and customer"),
    ] = None,
) -> OrderAccepted:
    """Store the order PENDING and start its saga in one transaction. The same
    ``Idempotency-Key`` from the same customer returns the same order and starts one saga;
    each customer has keys of their own."""
    rt = Runtime.of(request)
    order_id = str(uuid.uuid4())
    flow = body.flow or default_flow()
    retry = (
        "retry with the same Idempotency-Key"
        if idempotency_key
        else "the order may exist; send an Idempotency-Key to make a retry safe"
    )
    async with rt.pool.acquire() as conn, http.transaction(conn, retry=retry):
        inserted = await conn.fetchval(
            "INSERT INTO orders (order_id, customer_id, product_id, quantity, status,"
            " idempotency_key, flow) VALUES ($1, $2, $3, $4, 'PENDING', $5, $6)"
            " ON CONFLICT (customer_id, idempotency_key) DO NOTHING RETURNING true",
            order_id,
            body.customer_id,
            body.product_id,
            body.quantity,
            idempotency_key,
            flow,
        )
        if not inserted:
            row = await conn.fetchrow(
                "SELECT * FROM orders WHERE customer_id = $1 AND idempotency_key = $2",
                body.customer_id,
                idempotency_key,
            )
            assert row is not None
            if (row["product_id"], row["quantity"]) != (body.product_id, body.quantity) or (
                body.flow is not None and body.flow != row["flow"]
            ):
                raise HTTPException(
                    409, "this customer used the Idempotency-Key for a different order"
                )
            return OrderAccepted(order_id=row["order_id"], status=row["status"], flow=row["flow"])
        price = await conn.fetchval(
            "SELECT price_cents FROM prices WHERE product_id = $1", body.product_id
        )
        amount = None if price is None else int(price) * body.quantity
        placed = {"order_id": order_id, **body.model_dump(exclude={"flow"}), "amount_cents": amount}
        await rt.start_saga(conn, flow.definition, placed, saga_id=order_id)
    rt.relay.wake()
    return OrderAccepted(order_id=order_id, status=OrderStatus.PENDING, flow=flow)


@functools.cache
def default_flow() -> Flow:
    """The flow of an order that names none: ``SHOP_FLOW`` (default reserve-first)."""
    raw = os.environ.get("SHOP_FLOW") or Flow.RESERVE_FIRST.value
    try:
        return Flow(raw)
    except ValueError:
        names = ", ".join(f.value for f in Flow)
        raise ConfigError(f"SHOP_FLOW={raw!r}: use one of {names}") from None


@routes.get(
    "/orders/{order_id}",
    response_model=OrderOut,
    operation_id="get_order",
    responses=http.problems(404, 503),
)
async def get_order(order_id: http.Identifier, request: Request) -> OrderOut:
    return _out(await http.row_or_404(request, "orders", "order_id", order_id))


class Price(BaseModel):
    product_id: str
    price_cents: int


@routes.get("/catalog/{product_id}", response_model=Price, responses=http.problems(404, 503))
async def get_price(product_id: http.Identifier, request: Request) -> Price:
    """The price this service knows for a product (replicated from inventory's events)."""
    async with Runtime.of(request).pool.acquire() as conn:
        price = await conn.fetchval(
            "SELECT price_cents FROM prices WHERE product_id = $1", product_id
        )
    if price is None:
        raise HTTPException(404, f"no price known for {product_id}")
    return Price(product_id=product_id, price_cents=price)


@routes.get("/orders", response_model=OrderPage, responses=http.problems(503))
async def list_orders(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[Cursor | None, Query(description="next_cursor of the previous page")] = None,
    status: OrderStatus | None = None,
    stuck: Annotated[
        bool, Query(description="only orders unsettled for longer than the stuck deadline")
    ] = False,
) -> OrderPage:
    """Orders oldest first, paged by cursor."""
    where: list[str] = ["TRUE"]
    args: list[Any] = []
    if stuck:
        args.append(Runtime.of(request).extra.get("stuck_after") or stuck_after())
        where.append(STUCK.format(len(args)))
    if after is not None:
        args += list(_cursor(after))
        where.append(f"(created_at, order_id) > (${len(args) - 1}, ${len(args)})")
    if status:
        args.append(status.value)
        where.append(f"status = ${len(args)}")
    args.append(limit)
    sql = (
        f"SELECT * FROM orders WHERE {' AND '.join(where)}"
        f" ORDER BY created_at, order_id LIMIT ${len(args)}"
    )
    async with Runtime.of(request).pool.acquire() as conn:
        rows = await conn.fetch(sql, *args)
    orders = [_out(r) for r in rows]
    nxt = None
    if len(orders) == limit:
        last = orders[-1]
        nxt = f"{(last.created_at - _EPOCH) // timedelta(microseconds=1)}|{last.order_id}"
    return OrderPage(orders=orders, next_cursor=nxt)


def _cursor(after: str) -> tuple[datetime, str]:
    """The (created_at, order_id) a page ended at, from the ``next_cursor`` it returned."""
    found = re.fullmatch(_CURSOR, after)
    if found is None:
        raise http.invalid("query", "after", "not a cursor from this API", after)
    return _EPOCH + timedelta(microseconds=int(found[1])), found[2]
