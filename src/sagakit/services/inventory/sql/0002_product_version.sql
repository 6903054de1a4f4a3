-- Every change of a product bumps its version; product.updated carries it, so a replica
-- (the order service's prices) applies only newer versions, whatever order events arrive in.
ALTER TABLE products ADD COLUMN version bigint NOT NULL DEFAULT 0;
