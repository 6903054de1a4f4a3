"""The agency: orchestrates trip sagas (their state, the timers, ``POST /sagas/trip/start``
and ``GET /sagas/{id}`` come with the framework), and starts trips from its own code."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Request

from examples.trip.saga import TRIP, TripRequest
from sagakit import Runtime, Service, http

service = Service("trips", database="trip_agency", orchestrates=[TRIP])


@service.routes.post("/trips", status_code=202, responses=http.problems(503, body=True))
async def book_trip(
    trip: TripRequest,
    request: Request,
    idempotency_key: Annotated[http.IdempotencyKey, Header()],
) -> dict[str, str]:
    """Start a trip from application code: the saga starts if and only if this transaction
    commits, and the same Idempotency-Key always names the same trip."""
    rt = Runtime.of(request)
    async with rt.pool.acquire() as conn, http.transaction(conn):
        # The agency's own writes (a customer record, a quote) would go here, in the
        # same transaction as the start of the saga.
        saga_id = await rt.start_saga(conn, TRIP, trip, key=idempotency_key)
    return {"saga_id": saga_id}
