-- Idempotency keys belong to the customer who sent them: two customers who happen to pick
-- the same key (a counter, "1") get an order each, and neither sees the other's.
ALTER TABLE orders DROP CONSTRAINT orders_idempotency_key_key;
ALTER TABLE orders ADD CONSTRAINT orders_customer_idempotency_key
    UNIQUE (customer_id, idempotency_key);
