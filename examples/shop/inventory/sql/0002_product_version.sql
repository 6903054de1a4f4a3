-- Every change of a product bumps its version; product.updated carries it, so a replica
-- (the order service's prices) applies only newer versions, whatever order events arrive in.
-- Versions start at 1: 0 is what events from before this migration carry.
ALTER TABLE products ADD COLUMN version bigint NOT NULL DEFAULT 1;
