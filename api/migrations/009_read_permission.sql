-- 009_read_permission: the read rule, in the database so rows a requester may not read
-- never leave it. A one-expression SQL function: the planner inlines it into queries.
-- Allowed when not in deny_list and either listed in readers or holding one of scopes.

CREATE OR REPLACE FUNCTION stet_may_read(permissions jsonb, requester_id text, requester_scopes text[])
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT NOT (COALESCE(permissions->'deny_list', '[]'::jsonb) ? requester_id)
       AND (COALESCE(permissions->'readers', '[]'::jsonb) ? requester_id
            OR COALESCE(permissions->'scopes', '[]'::jsonb) ?| requester_scopes)
$$;
