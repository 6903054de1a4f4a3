-- One rental per trip (the saga id); CANCELLED without a driver is a tombstone.
CREATE TABLE rentals (
    trip_id    text PRIMARY KEY,
    status     text NOT NULL CHECK (status IN ('RENTED', 'CANCELLED')),
    driver     text,
    pick_up    text,
    car_class  text,
    day        date,
    updated_at timestamptz NOT NULL DEFAULT now()
);
