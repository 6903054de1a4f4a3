"""The trip saga: book a flight and a hotel at once, then rent a car. A car that cannot be
had cancels the flight and the hotel: compensations run in reverse order of the stages."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field

from sagakit import Action, Parallel, SagaDefinition, Step, http


class TripRequest(BaseModel):
    """What a trip saga starts with."""

    model_config = ConfigDict(extra="forbid")

    traveller: http.Identifier  # 1 to 200 characters, no control characters
    origin: str = Field(pattern="^[A-Z]{3}$", description="airport code")
    destination: str = Field(pattern="^[A-Z]{3}$", description="airport code")
    depart: date
    nights: int = Field(gt=0, le=30)
    car_class: str = Field(default="compact", pattern="^[a-z]{1,20}$")


class Trip(TripRequest):
    """What a booking command carries: the saga id (the trip's id), the request, and what
    earlier steps replied."""

    model_config = ConfigDict(extra="ignore")

    saga_id: str


class TripRef(BaseModel):
    """What a cancellation carries: which trip, and why it is undone."""

    saga_id: str
    reason: str | None = None


class Reply(BaseModel):
    """One model covers a step's replies: success sets the reference, failure the reason."""

    reason: str | None = None


class FlightReply(Reply):
    flight_ref: str | None = None


class HotelReply(Reply):
    hotel_ref: str | None = None


class CarReply(Reply):
    car_ref: str | None = None


TRIP = SagaDefinition(
    name="trip",
    data=TripRequest,
    steps=(
        # The flight and the hotel do not depend on each other: they are booked at once.
        # If one refuses, the other is cancelled once it has answered.
        Parallel(
            "book_stay",
            Step(
                "book_flight",
                Action("flight.book", "flight.booked", payload=Trip, reply=FlightReply),
                failure=("flight.unavailable",),
                compensation=Action("flight.cancel", "flight.cancelled", payload=TripRef),
                timeout=3.0,  # no answer in 3 s: send again, then wait 6 s ...
                max_attempts=2,  # ... and undo the step if that is not answered either
            ),
            Step(
                "book_hotel",
                Action("hotel.book", "hotel.booked", payload=Trip, reply=HotelReply),
                failure=("hotel.unavailable",),
                compensation=Action("hotel.cancel", "hotel.cancelled", payload=TripRef),
                timeout=3.0,
                max_attempts=2,
            ),
        ),
        # The last step is the point of no return: once the car is rented, nothing can fail
        # any more, so it needs no kind=StepKind.PIVOT (which only matters when retriable
        # steps follow). It keeps a compensation for one case: when it times out, the car
        # may have been rented, so the saga cancels the rental too (a no-op if there was
        # none) before the hotel and the flight. A refusal (car.unavailable) changed
        # nothing, so only the hotel and the flight are undone.
        Step(
            "rent_car",
            Action("car.rent", "car.rented", payload=Trip, reply=CarReply),
            failure=("car.unavailable",),
            compensation=Action("car.cancel", "car.cancelled", payload=TripRef),
            timeout=3.0,
            max_attempts=2,
        ),
    ),
)
