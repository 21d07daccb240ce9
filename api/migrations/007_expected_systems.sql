-- 007_expected_systems: systems each tenant expects heartbeats from, so tenant-wide
-- escalation can report a system that never reported as MISSING.

CREATE TABLE IF NOT EXISTS enforcement_expected_systems (
    tenant_id  uuid NOT NULL,
    system_id  text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, system_id)
);
