-- 004_enforcement_heartbeats: no historical migration created this table, though the
-- old service wrote to it. Also repairs databases migrated by hand with the historical
-- 001, which lacked idx_tenant_subject (the guide's "verify critical indexes" step).

CREATE TABLE IF NOT EXISTS enforcement_heartbeats (
    heartbeat_id                uuid PRIMARY KEY,
    tenant_id                   uuid NOT NULL,
    system_id                   text NOT NULL,
    enforced_correction_version timestamptz NOT NULL,
    origin                      jsonb NOT NULL,
    reported_at                 timestamptz NOT NULL DEFAULT now()
);

-- "Latest heartbeat per (tenant, system)" reads this index backwards from the newest.
CREATE INDEX IF NOT EXISTS idx_heartbeats_latest
    ON enforcement_heartbeats (tenant_id, system_id, reported_at DESC);

CREATE INDEX IF NOT EXISTS idx_tenant_subject
    ON corrections (tenant_id, subject_type, subject_id);
