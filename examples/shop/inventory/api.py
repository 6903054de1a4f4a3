"""Inventory's HTTP API: products, their stock and price."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from examples.shop.messages import ProductPriced
from sagakit import Runtime, http, new_message, publish, topic_name

routes = APIRouter()


class ProductIn(http.StrictBody):
    stock: http.Integer = Field(ge=0, le=1_000_000_000, description="units available to sell")
    price_cents: http.Integer = Field(ge=0, le=10**12)


class ProductOut(BaseModel):
    product_id: str
    available: int
    reserved: int
    sold: int
    price_cents: int


@routes.put(
    "/products/{product_id}",
    response_model=ProductOut,
    responses={
        **http.links(
            200,
            GetProduct=http.link(
                "get_product", "the product just set", product_id="$response.body#/product_id"
            ),
        ),
        **http.problems(503, body=True),
    },
)
async def put_product(product_id: http.Identifier, body: ProductIn, request: Request) -> ProductOut:
    """Set a product's available stock and price (stock held by running sagas is kept)."""
    rt = Runtime.of(request)
    async with rt.pool.acquire() as conn, http.transaction(conn):
        row = await conn.fetchrow(
            """
            INSERT INTO products (product_id, available, initial, price_cents)
            VALUES ($1, $2, $2, $3)
            ON CONFLICT (product_id) DO UPDATE SET
                available = EXCLUDED.available,
                initial = EXCLUDED.available + products.reserved + products.sold,
                price_cents = EXCLUDED.price_cents,
                version = products.version + 1
            RETURNING *
            """,
            product_id,
            body.stock,
            body.price_cents,
        )
        assert row is not None
        priced = ProductPriced(
            product_id=product_id, price_cents=body.price_cents, version=row["version"]
        )
        topic = topic_name(rt.settings.namespace, "product.updated")
        await publish(conn, new_message("product.updated", priced, key=product_id, topic=topic))
    rt.relay.wake()
    return ProductOut(**{k: row[k] for k in ProductOut.model_fields})


@routes.get(
    "/products/{product_id}",
    response_model=ProductOut,
    operation_id="get_product",
    responses=http.problems(404, 503),
)
async def get_product(product_id: http.Identifier, request: Request) -> ProductOut:
    row = await http.row_or_404(request, "products", "product_id", product_id)
    return ProductOut(**{k: row[k] for k in ProductOut.model_fields})
