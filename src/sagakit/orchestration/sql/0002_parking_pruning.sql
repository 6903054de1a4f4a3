-- A saga the runtime cannot process (its definition changed under it, a bug in a step's
-- data) is parked: the reason is kept, its timer stops, and the other sagas go on. An
-- operator resumes it once the cause is fixed.
ALTER TABLE sagas ADD COLUMN parked text;
CREATE INDEX sagas_parked ON sagas (updated_at) WHERE parked IS NOT NULL;

-- Finished sagas and their log are pruned after a retention period, oldest first.
CREATE INDEX sagas_finished ON sagas (updated_at) WHERE status IN ('COMPLETED', 'FAILED');
