"""Inventory's HTTP API: products, their stock and price."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from sagakit.messaging import new_message, outbox
from sagakit.services.host import row_or_404, runtime_of
from sagakit.services.messages import ProductPriced
from sagakit.topics import topic_name

routes = APIRouter()


class ProductIn(BaseModel):
    stock: int = Field(ge=0, le=1_000_000_000, description="units available to sell")
    price_cents: int = Field(ge=0, le=10**12)


class ProductOut(BaseModel):
    product_id: str
    available: int
    reserved: int
    sold: int
    price_cents: int


@routes.put("/products/{product_id}", response_model=ProductOut)
async def put_product(product_id: str, body: ProductIn, request: Request) -> ProductOut:
    """Set a product's available stock and price (stock held by running sagas is kept)."""
    rt = runtime_of(request)
    async with rt.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """
            INSERT INTO products (product_id, available, initial, price_cents)
            VALUES ($1, $2, $2, $3)
            ON CONFLICT (product_id) DO UPDATE SET
                available = EXCLUDED.available,
                initial = EXCLUDED.available + products.reserved + products.sold,
                price_cents = EXCLUDED.price_cents
            RETURNING *
            """,
            product_id,
            body.stock,
            body.price_cents,
        )
        assert row is not None
        priced = ProductPriced(product_id=product_id, price_cents=body.price_cents)
        topic = topic_name(rt.settings.namespace, "product.updated")
        await outbox.add(conn, new_message("product.updated", priced, key=product_id, topic=topic))
    rt.relay.wake()
    return ProductOut(**{k: row[k] for k in ProductOut.model_fields})


@routes.get("/products/{product_id}", response_model=ProductOut)
async def get_product(product_id: str, request: Request) -> ProductOut:
    row = await row_or_404(request, "products", "product_id", product_id)
    return ProductOut(**{k: row[k] for k in ProductOut.model_fields})
