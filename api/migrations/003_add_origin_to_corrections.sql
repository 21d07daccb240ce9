-- 003_add_origin_to_corrections: historically a second copy of 002 that failed when run
-- after it. Kept (the guide names it) and made harmless: it only ensures the column.

ALTER TABLE corrections
    ADD COLUMN IF NOT EXISTS origin jsonb NOT NULL
    DEFAULT '{"service": "unknown", "version": "unknown", "environment": "unknown"}';

ALTER TABLE corrections ALTER COLUMN origin DROP DEFAULT;
