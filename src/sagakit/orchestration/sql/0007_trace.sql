-- The W3C trace context (traceparent) a saga started in: what its timers send continues
-- the saga's trace.
ALTER TABLE sagas ADD COLUMN trace text;
