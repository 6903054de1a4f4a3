"""The flight service: books a seat for a trip, and cancels it."""

from __future__ import annotations

from examples.trip.saga import TRIP, Trip, TripRef
from sagakit import MessageContext, Service

service = Service("flight", database="trip_flight", migrations="examples.trip.flight", sagas=[TRIP])


@service.handles("flight.book", replies=("flight.booked", "flight.unavailable"))
async def book(ctx: MessageContext, trip: Trip) -> None:
    if trip.origin == trip.destination:  # a refusal changes nothing
        reason = f"no flights from {trip.origin} to itself"
        await ctx.reply("flight.unavailable", {"reason": reason})
        return
    # ctx.tx also records the command as handled: a redelivered command finds its row.
    await ctx.tx.execute(
        "INSERT INTO flights (trip_id, status, traveller, route, depart)"
        " VALUES ($1, 'BOOKED', $2, $3, $4) ON CONFLICT (trip_id) DO NOTHING",
        trip.saga_id,
        trip.traveller,
        f"{trip.origin}-{trip.destination}",
        trip.depart,
    )
    status = await ctx.tx.fetchval("SELECT status FROM flights WHERE trip_id = $1", trip.saga_id)
    if status == "CANCELLED":  # cancelled before this booking arrived: refuse it
        await ctx.reply("flight.unavailable", {"reason": "trip cancelled"})
    else:
        await ctx.reply("flight.booked", {"flight_ref": f"FL-{trip.saga_id[:8]}"})


@service.handles("flight.cancel", replies=("flight.cancelled",))
async def cancel(ctx: MessageContext, ref: TripRef) -> None:
    # Idempotent, and safe when nothing was booked: the row left is a tombstone.
    await ctx.tx.execute(
        "INSERT INTO flights (trip_id, status) VALUES ($1, 'CANCELLED')"
        " ON CONFLICT (trip_id) DO UPDATE SET status = 'CANCELLED', updated_at = now()",
        ref.saga_id,
    )
    await ctx.reply("flight.cancelled")
