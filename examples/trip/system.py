"""The trip's services, for ``sagakit up examples.trip.system:SERVICES`` and fleets (the
agency comes last: ``sagakit up`` gives it port 8004)."""

from __future__ import annotations

SERVICES = {
    "flight": "examples.trip.flight:service",
    "hotel": "examples.trip.hotel:service",
    "car": "examples.trip.car:service",
    "trips": "examples.trip.trips:service",
}
