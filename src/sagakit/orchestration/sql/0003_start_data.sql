-- The data a saga started with, as it was (its data grows with its replies' fields): a
-- start repeated under the same id is recognised as the same start by comparing with it.
ALTER TABLE sagas ADD COLUMN start_data jsonb;
