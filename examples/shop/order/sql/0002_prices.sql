-- Prices replicated from inventory's product.updated events: the order service prices an
-- order without calling inventory (choreography needs the amount before stock is reserved).
CREATE TABLE prices (
    product_id  text PRIMARY KEY,
    price_cents bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
