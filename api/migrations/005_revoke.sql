-- 005_revoke: who revoked a correction, when and why (GDPR erasure requests).

ALTER TABLE corrections ADD COLUMN IF NOT EXISTS revoked_at timestamptz;
ALTER TABLE corrections ADD COLUMN IF NOT EXISTS revoked_reason text;
ALTER TABLE corrections ADD COLUMN IF NOT EXISTS revoked_by_type text;
ALTER TABLE corrections ADD COLUMN IF NOT EXISTS revoked_by_id text;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'corrections_revoked_has_details') THEN
        ALTER TABLE corrections ADD CONSTRAINT corrections_revoked_has_details
            CHECK (status <> 'REVOKED' OR revoked_at IS NOT NULL) NOT VALID;
    END IF;
END
$$;
