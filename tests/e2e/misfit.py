"""Services that cannot start: one whose handler declares a reply its saga does not know,
one whose own tables cannot be created."""

from examples.trip.saga import TRIP, Trip

from sagakit import MessageContext, MigrationSet, Service
from sagakit.db.migrations import Migration

service = Service("misfit", sagas=[TRIP])


@service.handles("flight.book", replies=("flight.booked", "flight.unavailible"))
async def book(ctx: MessageContext, trip: Trip) -> None: ...


broken_tables = Service(
    "broken",
    migrations=MigrationSet("broken", (Migration(1, "typo", "CREATE TABLEE bookings ();"),)),
)
