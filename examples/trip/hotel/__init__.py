"""The hotel service: books a room for a trip's nights, and cancels it."""

from __future__ import annotations

from datetime import timedelta

from examples.trip.saga import TRIP, Trip, TripRef
from sagakit import MessageContext, Service

service = Service("hotel", database="trip_hotel", migrations="examples.trip.hotel", sagas=[TRIP])
MAX_NIGHTS = 14
"""Longer stays are refused (hotel.unavailable), and the trip is undone."""


@service.handles("hotel.book", replies=("hotel.booked", "hotel.unavailable"))
async def book(ctx: MessageContext, trip: Trip) -> None:
    if trip.nights > MAX_NIGHTS:  # a refusal changes nothing
        reason = f"no rooms for {trip.nights} nights in {trip.destination}"
        await ctx.reply("hotel.unavailable", {"reason": reason})
        return
    await ctx.tx.execute(
        "INSERT INTO rooms (trip_id, status, guest, city, check_in, check_out)"
        " VALUES ($1, 'BOOKED', $2, $3, $4, $5) ON CONFLICT (trip_id) DO NOTHING",
        trip.saga_id,
        trip.traveller,
        trip.destination,
        trip.depart,
        trip.depart + timedelta(days=trip.nights),
    )
    status = await ctx.tx.fetchval("SELECT status FROM rooms WHERE trip_id = $1", trip.saga_id)
    if status == "CANCELLED":
        await ctx.reply("hotel.unavailable", {"reason": "trip cancelled"})
    else:
        await ctx.reply("hotel.booked", {"hotel_ref": f"HT-{trip.saga_id[:8]}"})


@service.handles("hotel.cancel", replies=("hotel.cancelled",))
async def cancel(ctx: MessageContext, ref: TripRef) -> None:
    await ctx.tx.execute(
        "INSERT INTO rooms (trip_id, status) VALUES ($1, 'CANCELLED')"
        " ON CONFLICT (trip_id) DO UPDATE SET status = 'CANCELLED', updated_at = now()",
        ref.saga_id,
    )
    await ctx.reply("hotel.cancelled")
