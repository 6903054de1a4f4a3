-- Choreography: the tracker publishes a timer event for a saga whose timer is due, and
-- notes when, so that it does not publish another before the first has come back (any
-- change of the saga clears it).
ALTER TABLE sagas ADD COLUMN timer_sent_at double precision;
