-- Transactional outbox: rows are written in the caller's transaction and published by a relay.
-- `lane` spreads keys over a fixed number of lanes; one relay at a time owns a lane
-- (transaction-level advisory lock), and publishes its rows in id order.
CREATE TABLE sagakit_outbox (
    id         bigserial   PRIMARY KEY,
    lane       smallint    NOT NULL,
    topic      text        NOT NULL,
    key        text        NOT NULL,
    message_id uuid        NOT NULL,
    value      bytea       NOT NULL,
    headers    jsonb       NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sagakit_outbox_lane_id ON sagakit_outbox (lane, id);

CREATE FUNCTION sagakit_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sagakit_outbox', '');
    RETURN NULL;
END $$;

CREATE TRIGGER sagakit_outbox_notify AFTER INSERT ON sagakit_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION sagakit_outbox_notify();

-- Inbox: one row per (consumer group, message id) handled. Inserted in the handler's
-- transaction, so "handled" and the handler's effects commit together.
CREATE TABLE sagakit_inbox (
    consumer_group text        NOT NULL,
    message_id     uuid        NOT NULL,
    handled_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, message_id)
);
