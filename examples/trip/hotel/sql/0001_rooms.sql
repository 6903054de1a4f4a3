-- One room per trip (the saga id); CANCELLED without a guest is a tombstone.
CREATE TABLE rooms (
    trip_id    text PRIMARY KEY,
    status     text NOT NULL CHECK (status IN ('BOOKED', 'CANCELLED')),
    guest      text,
    city       text,
    check_in   date,
    check_out  date,
    updated_at timestamptz NOT NULL DEFAULT now()
);
