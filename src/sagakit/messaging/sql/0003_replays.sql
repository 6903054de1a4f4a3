-- Every replay of a dead letter: who replayed it, when, and why (operator tools).
CREATE TABLE sagakit_replays (
    id bigserial PRIMARY KEY,
    consumer_group text NOT NULL,
    topic text NOT NULL,
    dlq_partition integer NOT NULL,
    dlq_offset bigint NOT NULL,
    message_id uuid,
    replayed_by text NOT NULL,
    note text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sagakit_replays_message ON sagakit_replays (consumer_group, message_id);
