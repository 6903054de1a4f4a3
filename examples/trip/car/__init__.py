"""The car rental service: rents a car of the class asked for, if it has that class."""

from __future__ import annotations

from examples.trip.saga import TRIP, Trip, TripRef
from sagakit import MessageContext, Service

service = Service("car", database="trip_car", migrations="examples.trip.car", sagas=[TRIP])

CLASSES = ("compact", "estate", "van")
"""What it rents: any other class is refused (car.unavailable), and the trip is undone."""


@service.handles("car.rent", replies=("car.rented", "car.unavailable"))
async def rent(ctx: MessageContext, trip: Trip) -> None:
    if trip.car_class not in CLASSES:  # a refusal changes nothing
        reason = f"no {trip.car_class} cars at {trip.destination}"
        await ctx.reply("car.unavailable", {"reason": reason})
        return
    await ctx.tx.execute(
        "INSERT INTO rentals (trip_id, status, driver, pick_up, car_class, day)"
        " VALUES ($1, 'RENTED', $2, $3, $4, $5) ON CONFLICT (trip_id) DO NOTHING",
        trip.saga_id,
        trip.traveller,
        trip.destination,
        trip.car_class,
        trip.depart,
    )
    status = await ctx.tx.fetchval("SELECT status FROM rentals WHERE trip_id = $1", trip.saga_id)
    if status == "CANCELLED":
        await ctx.reply("car.unavailable", {"reason": "trip cancelled"})
    else:
        await ctx.reply("car.rented", {"car_ref": f"CR-{trip.saga_id[:8]}"})


@service.handles("car.cancel", replies=("car.cancelled",))
async def cancel(ctx: MessageContext, ref: TripRef) -> None:
    await ctx.tx.execute(
        "INSERT INTO rentals (trip_id, status) VALUES ($1, 'CANCELLED')"
        " ON CONFLICT (trip_id) DO UPDATE SET status = 'CANCELLED', updated_at = now()",
        ref.saga_id,
    )
    await ctx.reply("car.cancelled")
