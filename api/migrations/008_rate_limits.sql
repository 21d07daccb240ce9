-- 008_rate_limits: fixed-window write counters shared by every API worker and host.
-- UNLOGGED: counters are worth losing on a crash rather than paying WAL for each write.

CREATE UNLOGGED TABLE IF NOT EXISTS rate_limit_windows (
    client_key   text NOT NULL,
    window_start timestamptz NOT NULL,
    hits         integer NOT NULL,
    PRIMARY KEY (client_key, window_start)
);

CREATE INDEX IF NOT EXISTS idx_rate_limit_windows_start ON rate_limit_windows (window_start);
