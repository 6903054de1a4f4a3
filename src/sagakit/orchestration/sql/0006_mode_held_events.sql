-- The mode the service keeping these sagas runs in (orchestration or choreography), written
-- at each start-up: operator tools act on a saga the way its service runs it.
CREATE TABLE saga_settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- Choreography: the events of a saga that this copy cannot follow yet (the definition
-- version it runs on is not hosted here), kept in stream order. An operator's resume, once
-- the version is deployed, applies them in that order and the copy takes part again.
CREATE TABLE saga_held_events (
    saga_id    text NOT NULL,
    seq        bigserial,
    topic      text NOT NULL,
    key        bytea NOT NULL,
    value      bytea NOT NULL,
    headers    bytea NOT NULL,
    PRIMARY KEY (saga_id, seq)
);
