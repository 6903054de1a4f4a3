CREATE TABLE orders (
    order_id        text PRIMARY KEY,
    customer_id     text NOT NULL,
    product_id      text NOT NULL,
    quantity        integer NOT NULL CHECK (quantity > 0),
    status          text NOT NULL,
    reason          text,
    amount_cents    bigint,
    idempotency_key text UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_created ON orders (created_at, order_id);
CREATE INDEX orders_pending ON orders (created_at) WHERE status NOT IN ('CONFIRMED', 'CANCELLED');
