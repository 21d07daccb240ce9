-- 006_api_keys: per-tenant API keys; only the SHA-256 of the secret is stored.

CREATE TABLE IF NOT EXISTS api_keys (
    key_id      uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL,
    name        text NOT NULL,
    secret_hash text NOT NULL CHECK (secret_hash ~ '^[0-9a-f]{64}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE UNIQUE INDEX IF NOT EXISTS uniq_api_key_name_per_tenant
    ON api_keys (tenant_id, name)
    WHERE revoked_at IS NULL;
