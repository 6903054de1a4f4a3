"""The order service's HTTP API: place orders (starting a saga) and read them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from sagakit.messaging import new_message, outbox
from sagakit.services.host import row_or_404, runtime_of
from sagakit.services.order.lifecycle import OrderStatus
from sagakit.services.order.stuck import STUCK, stuck_after
from sagakit.topics import topic_name

routes = APIRouter()


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: str = Field(min_length=1, max_length=200)
    product_id: str = Field(min_length=1, max_length=200)
    quantity: int = Field(gt=0, le=1_000_000)


class OrderOut(BaseModel):
    order_id: str
    status: OrderStatus
    reason: str | None = None
    customer_id: str
    product_id: str
    quantity: int
    amount_cents: int | None = None
    created_at: datetime
    updated_at: datetime


class OrderPage(BaseModel):
    orders: list[OrderOut]
    next_cursor: str | None = Field(description="pass as ?after= for the next page")


def _out(row: asyncpg.Record) -> OrderOut:
    return OrderOut(**{k: row[k] for k in OrderOut.model_fields})


@routes.post("/orders", status_code=202, responses={409: {"description": "key reused"}})
async def place_order(
    body: OrderIn,
    request: Request,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JSONResponse:
    """Store the order PENDING and announce ``order.created`` in one transaction. The same
    ``Idempotency-Key`` returns the same order and starts one saga."""
    rt = runtime_of(request)
    order_id = str(uuid.uuid4())
    async with rt.pool.acquire() as conn, conn.transaction():
        inserted = await conn.fetchval(
            "INSERT INTO orders (order_id, customer_id, product_id, quantity, status,"
            " idempotency_key) VALUES ($1, $2, $3, $4, 'PENDING', $5)"
            " ON CONFLICT (idempotency_key) DO NOTHING RETURNING true",
            order_id,
            body.customer_id,
            body.product_id,
            body.quantity,
            idempotency_key,
        )
        if not inserted:
            row = await conn.fetchrow(
                "SELECT * FROM orders WHERE idempotency_key = $1", idempotency_key
            )
            assert row is not None
            same = (row["customer_id"], row["product_id"], row["quantity"]) == (
                body.customer_id,
                body.product_id,
                body.quantity,
            )
            if not same:
                raise HTTPException(409, "Idempotency-Key was used for a different order")
            return JSONResponse({"order_id": row["order_id"], "status": row["status"]}, 202)
        price = await conn.fetchval(
            "SELECT price_cents FROM prices WHERE product_id = $1", body.product_id
        )
        amount = None if price is None else int(price) * body.quantity
        event = new_message(
            "order.created",
            {"order_id": order_id, **body.model_dump(), "amount_cents": amount},
            key=order_id,
            topic=topic_name(rt.settings.namespace, "order.created"),
        )
        await outbox.add(conn, event)
    rt.relay.wake()
    return JSONResponse({"order_id": order_id, "status": "PENDING"}, 202)


@routes.get("/orders/{order_id}", response_model=OrderOut)
async def get_order(order_id: str, request: Request) -> OrderOut:
    return _out(await row_or_404(request, "orders", "order_id", order_id))


class Price(BaseModel):
    product_id: str
    price_cents: int


@routes.get("/catalog/{product_id}", response_model=Price)
async def get_price(product_id: str, request: Request) -> Price:
    """The price this service knows for a product (replicated from inventory's events)."""
    async with runtime_of(request).pool.acquire() as conn:
        price = await conn.fetchval(
            "SELECT price_cents FROM prices WHERE product_id = $1", product_id
        )
    if price is None:
        raise HTTPException(404, f"no price known for {product_id}")
    return Price(product_id=product_id, price_cents=price)


@routes.get("/orders", response_model=OrderPage)
async def list_orders(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[str | None, Query(description="cursor from the previous page")] = None,
    status: OrderStatus | None = None,
    stuck: Annotated[
        bool, Query(description="only orders unsettled for longer than the stuck deadline")
    ] = False,
) -> OrderPage:
    """Orders oldest first, paged by cursor."""
    where: list[str] = ["TRUE"]
    args: list[Any] = []
    if stuck:
        args.append(runtime_of(request).extra.get("stuck_after") or stuck_after())
        where.append(STUCK.format(len(args)))
    if after:
        try:
            ts, oid = after.split("|", 1)
            cursor: tuple[Any, ...] = (datetime.fromisoformat(ts), oid)
        except ValueError:
            raise HTTPException(422, "after: not a cursor from this API") from None
        args += list(cursor)
        where.append(f"(created_at, order_id) > (${len(args) - 1}, ${len(args)})")
    if status:
        args.append(status.value)
        where.append(f"status = ${len(args)}")
    args.append(limit)
    sql = (
        f"SELECT * FROM orders WHERE {' AND '.join(where)}"
        f" ORDER BY created_at, order_id LIMIT ${len(args)}"
    )
    async with runtime_of(request).pool.acquire() as conn:
        rows = await conn.fetch(sql, *args)
    orders = [_out(r) for r in rows]
    nxt = None
    if len(orders) == limit:
        nxt = f"{orders[-1].created_at.isoformat()}|{orders[-1].order_id}"
    return OrderPage(orders=orders, next_cursor=nxt)
