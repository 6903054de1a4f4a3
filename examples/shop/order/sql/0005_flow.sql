-- Which saga flow each order runs (reserve-first or pay-first): chosen when it is placed.
ALTER TABLE orders ADD COLUMN flow text NOT NULL DEFAULT 'reserve-first';
