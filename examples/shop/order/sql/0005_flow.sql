-- Which saga flow each order runs (reserve-first or pay-first): chosen when it is placed.
-- Orders from before this column ran reserve-first, or the hand-written choreography that
-- the pay-first definition replaced; they are labelled reserve-first.
ALTER TABLE orders ADD COLUMN flow text NOT NULL DEFAULT 'reserve-first';

-- That choreography left an order CANCELLING while its refund was due. Nothing drives such
-- an order any more: it goes back to PENDING with a reason, so the stuck-order report
-- (GET /orders?stuck=true) lists it for an operator.
UPDATE orders SET status = 'PENDING', reason = 'was CANCELLING: check its refund, then cancel'
WHERE status = 'CANCELLING';
