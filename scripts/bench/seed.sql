-- Bench data for one tenant, shared by scripts/bench-api and scripts/bench-pilot:
--   psql -v tenant=<uuid> -v subjects=<n> -f seed.sql
-- :subjects users x 5 ACTIVE facts each (readable by "assistant"), and the 5 systems the
-- heartbeats of scripts/bench/mix.lua report as expected systems of the tenant.
INSERT INTO corrections (correction_id, tenant_id, subject_type, subject_id, field_key, value, class,
                         status, permissions, actor_type, actor_id, idempotency_key, origin)
SELECT gen_random_uuid(), :'tenant', 'user', 'u-' || s, 'field_' || f, to_jsonb('seed value ' || s),
       'FACT', 'ACTIVE', '{"readers": ["assistant"], "scopes": ["support"]}', 'user', 'u-' || s,
       'seed-' || s || '-' || f, '{"service": "bench"}'
FROM generate_series(1, :subjects) AS s, generate_series(1, 5) AS f;
INSERT INTO enforcement_expected_systems (tenant_id, system_id)
SELECT :'tenant', 'system-' || n FROM generate_series(1, 5) AS n;
ANALYZE corrections;
ANALYZE enforcement_expected_systems;
