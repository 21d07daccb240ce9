-- 010_schema_window: the schema compatibility window (expand/contract).
-- From this migration on, every migration declares here whether code older than it still
-- runs on the schema it leaves: true for an expand step (a new table, a nullable column,
-- an index), false for a contract step (a drop, a rename, a new constraint older code would
-- violate). /ready of older code accepts a newer schema only when every newer migration
-- says true; playbooks/rollback.yml refuses a rollback across one that says false.

CREATE TABLE IF NOT EXISTS schema_window (
    migration       integer PRIMARY KEY,
    older_code_runs boolean NOT NULL
);

INSERT INTO schema_window (migration, older_code_runs) VALUES (10, true)
ON CONFLICT (migration) DO NOTHING;
