"""A trip-booking saga, the tutorial's example (docs/tutorial.md): book a flight, a hotel and
a car, each with its own service and database, orchestrated by the agency; a car that cannot
be had cancels the flight and the hotel. ``sagakit up examples.trip.system:SERVICES``."""
