CREATE TABLE sagas (
    saga_id    text PRIMARY KEY,
    definition text NOT NULL,
    status     text NOT NULL,
    step       integer NOT NULL,
    attempt    integer NOT NULL,
    data       jsonb NOT NULL,
    reason     text,
    started_at double precision NOT NULL,
    due_at     double precision,
    version    integer NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sagas_due ON sagas (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX sagas_status ON sagas (status);

-- Every transition, for timelines and audits.
CREATE TABLE saga_log (
    id       bigserial PRIMARY KEY,
    saga_id  text NOT NULL,
    version  integer NOT NULL,
    status   text NOT NULL,
    step     text NOT NULL,
    event    text NOT NULL,
    note     text NOT NULL,
    commands text[] NOT NULL,
    at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX saga_log_saga ON saga_log (saga_id, id);
