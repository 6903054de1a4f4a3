CREATE TABLE customers (
    customer_id    text PRIMARY KEY,
    balance_cents  bigint NOT NULL CHECK (balance_cents >= 0),
    charged_cents  bigint NOT NULL DEFAULT 0,
    refunded_cents bigint NOT NULL DEFAULT 0
);

-- One row per order. VOIDED (amount 0) is a tombstone: a refund that arrived before (or
-- instead of) its charge; a late charge for that order is then declined.
CREATE TABLE payments (
    order_id     text PRIMARY KEY,
    customer_id  text NOT NULL,
    amount_cents bigint NOT NULL,
    status       text NOT NULL CHECK (status IN ('CHARGED', 'DECLINED', 'REFUNDED', 'VOIDED')),
    reason       text,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
