-- The version of the product.updated event a price came from: an older event (a retried
-- batch, a replayed dead letter) never overwrites a newer price.
ALTER TABLE prices ADD COLUMN version bigint NOT NULL DEFAULT 0;
