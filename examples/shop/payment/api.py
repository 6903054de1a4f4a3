"""Payment's HTTP API: customers and their money."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from sagakit import Runtime, http

routes = APIRouter()


class CustomerIn(http.StrictBody):
    balance_cents: http.Integer = Field(ge=0, le=10**15)


class CustomerOut(BaseModel):
    customer_id: str
    balance_cents: int
    charged_cents: int
    refunded_cents: int


@routes.put(
    "/customers/{customer_id}",
    response_model=CustomerOut,
    responses={
        **http.links(
            200,
            GetCustomer=http.link(
                "get_customer",
                "the customer just set",
                customer_id="$response.body#/customer_id",
            ),
        ),
        **http.problems(503, body=True),
    },
)
async def put_customer(
    customer_id: http.Identifier, body: CustomerIn, request: Request
) -> CustomerOut:
    """Set a customer's balance (what they can still spend)."""
    async with Runtime.of(request).pool.acquire() as conn, http.transaction(conn):
        row = await conn.fetchrow(
            """
            INSERT INTO customers (customer_id, balance_cents) VALUES ($1, $2)
            ON CONFLICT (customer_id) DO UPDATE SET balance_cents = EXCLUDED.balance_cents
            RETURNING *
            """,
            customer_id,
            body.balance_cents,
        )
    assert row is not None
    return CustomerOut(**{k: row[k] for k in CustomerOut.model_fields})


@routes.get(
    "/customers/{customer_id}",
    response_model=CustomerOut,
    operation_id="get_customer",
    responses=http.problems(404, 503),
)
async def get_customer(customer_id: http.Identifier, request: Request) -> CustomerOut:
    row = await http.row_or_404(request, "customers", "customer_id", customer_id)
    return CustomerOut(**{k: row[k] for k in CustomerOut.model_fields})
