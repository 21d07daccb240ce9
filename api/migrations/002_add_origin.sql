-- 002_add_origin: who wrote each correction (service, version, environment).
-- The historical 002 and 003 both added this column; IF NOT EXISTS makes either a no-op
-- when the other (or a hand-run historical file) got there first.

ALTER TABLE corrections
    ADD COLUMN IF NOT EXISTS origin jsonb NOT NULL
    DEFAULT '{"service": "unknown", "version": "unknown", "environment": "unknown"}';

-- Rows that existed before got the "unknown" origin; new writes must name theirs.
ALTER TABLE corrections ALTER COLUMN origin DROP DEFAULT;

COMMENT ON COLUMN corrections.origin IS
    'Origin attestation: service, version and environment of the writer.';
