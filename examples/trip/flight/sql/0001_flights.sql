-- One row per trip (the saga id). CANCELLED without a route is a tombstone: the cancel came
-- before (or instead of) the booking, and a late booking is refused.
CREATE TABLE flights (
    trip_id    text PRIMARY KEY,
    status     text NOT NULL CHECK (status IN ('BOOKED', 'CANCELLED')),
    traveller  text,
    route      text,
    depart     date,
    updated_at timestamptz NOT NULL DEFAULT now()
);
