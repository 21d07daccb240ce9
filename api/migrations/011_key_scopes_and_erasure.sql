-- 011_key_scopes_and_erasure: what each API key may do, and erasure of revoked values.
--
-- api_keys.scopes: read (facts, history, enforcement status, expected systems list),
-- write (corrections, revoke), enforce (heartbeats only), admin (expected systems, keys).
-- Keys that exist when this runs keep all four: before it every key could do all of this,
-- and the deployed roles rely on it (the health-check key registers expected systems).
-- Taking a scope away in a migration would break running clients in mid-deploy with no
-- way to stage it; least privilege comes from issuing keys with explicit scopes
-- (stet.ops.api_key, option scopes). The column default is the same set, so a key made by
-- code older than this migration (which knows no scopes) behaves as it did.
--
-- corrections.erased_at: set when a revoke with erase scrubbed the row's value (the value
-- becomes JSON null and the idempotency record's payload hash is dropped).
--
-- Both are additions with defaults; older code ignores them: it still runs on this schema.

ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS scopes text[] NOT NULL
    DEFAULT ARRAY['read', 'write', 'enforce', 'admin']::text[];

ALTER TABLE api_keys DROP CONSTRAINT IF EXISTS api_keys_scopes_known;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_scopes_known
    CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['read', 'write', 'enforce', 'admin']::text[]);

ALTER TABLE corrections ADD COLUMN IF NOT EXISTS erased_at timestamptz;

INSERT INTO schema_window (migration, older_code_runs) VALUES (11, true)
ON CONFLICT (migration) DO NOTHING;
