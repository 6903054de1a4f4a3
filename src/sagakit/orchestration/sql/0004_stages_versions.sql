-- Each step of the stage a saga is at (a lone step, or a parallel group's members), with its
-- attempts and timer; and the version of the definition the saga started with. A saga in
-- flight across this upgrade has no members yet: the orchestrator rebuilds them from its
-- step, attempt and due_at the first time it touches it.
ALTER TABLE sagas ADD COLUMN members jsonb NOT NULL DEFAULT '{}';
ALTER TABLE sagas ADD COLUMN definition_version integer NOT NULL DEFAULT 1;
