-- 001_init: corrections and idempotency, with the invariants the database enforces.
-- Safe on an empty database and on one migrated by hand with the historical files.

CREATE TABLE IF NOT EXISTS corrections (
    correction_id   uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL,
    subject_type    text NOT NULL,
    subject_id      text NOT NULL,
    field_key       text NOT NULL,
    value           jsonb NOT NULL,
    class           text NOT NULL CHECK (class IN ('FACT', 'DISCARDABLE')),
    status          text NOT NULL CHECK (status IN ('ACTIVE', 'SUPERSEDED', 'REVOKED')),
    supersedes      uuid,
    permissions     jsonb NOT NULL,
    actor_type      text NOT NULL,
    actor_id        text NOT NULL,
    idempotency_key text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- At most one ACTIVE correction per field: concurrent writers cannot both win.
CREATE UNIQUE INDEX IF NOT EXISTS uniq_active_per_field
    ON corrections (tenant_id, subject_type, subject_id, field_key)
    WHERE status = 'ACTIVE';

CREATE INDEX IF NOT EXISTS idx_tenant_subject
    ON corrections (tenant_id, subject_type, subject_id);

CREATE INDEX IF NOT EXISTS idx_active_facts
    ON corrections (tenant_id, subject_type, subject_id)
    WHERE status = 'ACTIVE' AND class = 'FACT';

CREATE TABLE IF NOT EXISTS idempotency (
    tenant_id     uuid NOT NULL,
    key           text NOT NULL,
    correction_id uuid NOT NULL,
    payload_hash  text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);
