-- What each transition received (the reply's, the start's or the operator's payload) and
-- the commands it sent with their payloads, for the console's timeline.
ALTER TABLE saga_log ADD COLUMN messages json;
