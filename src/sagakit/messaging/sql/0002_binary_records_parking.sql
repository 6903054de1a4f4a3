-- Keys and headers as bytes: a record copied to the dead-letter topic keeps its key and
-- headers exactly, whatever bytes they hold (PostgreSQL text and jsonb refuse NUL).
-- Headers are one blob: per header, a 4-byte length and the UTF-8 name, a 4-byte length and
-- the value (sagakit.messaging.codec.pack_headers).
CREATE FUNCTION pg_temp.sagakit_pack_headers(h jsonb) RETURNS bytea LANGUAGE sql AS $$
    SELECT coalesce(string_agg(
        int4send(octet_length(convert_to(k, 'UTF8'))) || convert_to(k, 'UTF8')
        || int4send(octet_length(convert_to(v, 'UTF8'))) || convert_to(v, 'UTF8'),
        ''::bytea), ''::bytea)
    FROM jsonb_each_text(h) AS t(k, v)
$$;
ALTER TABLE sagakit_outbox ALTER COLUMN key TYPE bytea USING convert_to(key, 'UTF8');
ALTER TABLE sagakit_outbox ALTER COLUMN headers DROP DEFAULT;
ALTER TABLE sagakit_outbox ALTER COLUMN headers TYPE bytea
    USING pg_temp.sagakit_pack_headers(headers);
ALTER TABLE sagakit_outbox ALTER COLUMN headers SET DEFAULT ''::bytea;

-- A row the broker keeps failing while others go through is retried, and counted.
ALTER TABLE sagakit_outbox ADD COLUMN attempts integer NOT NULL DEFAULT 0;
ALTER TABLE sagakit_outbox ADD COLUMN last_error text;

-- Rows the broker rejects for good (too large, invalid topic, refused) are moved here, so
-- that they stop holding up the rows behind them; an operator lists and requeues them
-- (`sagakit outbox parked`, `sagakit outbox requeue`).
CREATE TABLE sagakit_outbox_parked (
    id         bigint      PRIMARY KEY,
    topic      text        NOT NULL,
    key        bytea       NOT NULL,
    message_id uuid        NOT NULL,
    value      bytea       NOT NULL,
    headers    bytea       NOT NULL,
    created_at timestamptz NOT NULL,
    attempts   integer     NOT NULL,
    error      text        NOT NULL,
    parked_at  timestamptz NOT NULL DEFAULT now()
);

-- A message the consumer gave up on is in the inbox as dead-lettered: a replay takes that
-- row away (once), so replaying the same dead letter twice cannot handle it twice.
ALTER TABLE sagakit_inbox ADD COLUMN dead_lettered boolean NOT NULL DEFAULT false;

-- Inbox pruning deletes by age. handled_at grows with insertion order, so a BRIN index
-- finds old rows at almost no cost to the inserts on the hot path.
CREATE INDEX sagakit_inbox_handled_at ON sagakit_inbox USING brin (handled_at);
