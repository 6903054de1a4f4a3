CREATE TABLE products (
    product_id  text PRIMARY KEY,
    available   integer NOT NULL CHECK (available >= 0),
    reserved    integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    sold        integer NOT NULL DEFAULT 0 CHECK (sold >= 0),
    initial     integer NOT NULL,
    price_cents bigint  NOT NULL CHECK (price_cents >= 0)
);

-- One row per order. RELEASED with quantity 0 is a tombstone: a release that arrived before
-- (or instead of) its reservation; a late reservation for that order is then refused.
CREATE TABLE reservations (
    order_id     text PRIMARY KEY,
    product_id   text NOT NULL,
    quantity     integer NOT NULL,
    amount_cents bigint NOT NULL DEFAULT 0,
    status       text NOT NULL CHECK (status IN ('RESERVED', 'REFUSED', 'RELEASED', 'COMMITTED')),
    reason       text,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
