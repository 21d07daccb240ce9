-- Historical 002: adds corrections.origin without IF NOT EXISTS.
ALTER TABLE corrections
ADD COLUMN origin JSONB NOT NULL DEFAULT '{"service": "unknown", "version": "unknown", "environment": "unknown"}';
ALTER TABLE corrections ALTER COLUMN origin DROP DEFAULT;
