-- Historical 003: adds the same column again, so it fails after 002.
ALTER TABLE corrections
ADD COLUMN origin JSONB NOT NULL DEFAULT '{"service": "unknown", "version": "unknown", "environment": "unknown"}';
ALTER TABLE corrections ALTER COLUMN origin DROP DEFAULT;
