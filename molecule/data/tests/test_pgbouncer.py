"""PgBouncer on the primary, reached by the API host through its DATABASE_URL."""

from __future__ import annotations

import time

from conftest import PRIMARY, run_ok

testinfra_hosts = [f"docker://{PRIMARY}"]

URL_FILE = "/etc/stet/secrets/database_url"


def test_api_database_url_points_at_pgbouncer_and_is_root_only(api, primary):
    url = api.file(URL_FILE)
    assert (url.user, url.group, url.mode) == ("root", "root", 0o600)
    primary_address = run_ok(api, f"getent ahostsv4 {PRIMARY} | awk 'NR == 1 {{print $1}}'")
    assert url.content_string.startswith("postgresql://stet:")
    assert url.content_string.endswith(
        f"@{primary_address}:6432/stet?sslmode=verify-full&sslrootcert=/etc/ssl/stet-pki/ca.crt"
    )


def test_api_host_queries_through_pgbouncer_with_the_stet_password(api):
    # The backend sees the connection arrive on 5432 from PgBouncer on 127.0.0.1.
    out = run_ok(
        api,
        f'psql -X -A -t -d "$(cat {URL_FILE})"'
        ' -c "SELECT current_user, inet_server_port(), inet_client_addr()"',
    )
    assert out == "stet|5432|127.0.0.1"


def test_the_api_sessions_carry_the_application_roles_bounds(api):
    """The timeouts are the role's (postgresql role, ALTER ROLE ... SET), not sent per request:
    a session through PgBouncer with the API's own URL has them, and a statement past the
    bound is cancelled by PostgreSQL before PgBouncer's query_timeout (7 s) would drop it."""
    shown = run_ok(
        api,
        f'psql -X -A -t -d "$(cat {URL_FILE})"'
        ' -c "SHOW statement_timeout" -c "SHOW idle_in_transaction_session_timeout"',
    )
    assert shown.splitlines() == ["5s", "10s"]
    slow = api.run(f'psql -X -d "$(cat {URL_FILE})" -c "SELECT pg_sleep(6)"')
    assert slow.rc != 0 and "canceling statement due to statement timeout" in slow.stderr


def test_wrong_password_is_refused_by_pgbouncer(api, primary):
    primary_address = run_ok(api, f"getent ahostsv4 {PRIMARY} | awk 'NR == 1 {{print $1}}'")
    result = api.run(f"psql -X -d 'postgresql://stet:wrong@{primary_address}:6432/stet' -c 'SELECT 1'")
    assert result.rc != 0 and "SASL authentication failed" in result.stderr


def test_pgbouncer_listens_on_private_address_and_loopback_only(primary):
    primary_address = run_ok(primary, "hostname -I | awk '{print $1}'")
    listening = set(run_ok(primary, "ss -Hltn 'sport = :6432' | awk '{print $4}'").split())
    assert listening == {f"{primary_address}:6432", "127.0.0.1:6432"}


def pgbouncer_show(host, what: str) -> list[dict[str, str]]:
    """Rows of SHOW <what> on PgBouncer's admin console, by column name.

    The console lets in the user "pgbouncer" without a password over the Unix socket when
    the client runs as the same OS user as PgBouncer (postgres).
    """
    out = run_ok(
        host,
        "runuser -u postgres -- psql -X -A -F '|' -P footer=off -h /var/run/postgresql -p 6432"
        f" -U pgbouncer -d pgbouncer -c 'SHOW {what}'",
    )
    header, *rows = out.splitlines()
    return [dict(zip(header.split("|"), row.split("|"), strict=True)) for row in rows]


def test_pgbouncer_runs_with_the_guide_settings(primary):
    config = {row["key"]: row["value"] for row in pgbouncer_show(primary, "CONFIG")}
    assert {
        name: config[name]
        for name in (
            "pool_mode",
            "max_client_conn",
            "default_pool_size",
            "reserve_pool_size",
            "auth_type",
            "listen_port",
        )
    } == {
        "pool_mode": "transaction",
        "max_client_conn": "200",
        "default_pool_size": "25",
        "reserve_pool_size": "0",
        "auth_type": "scram-sha-256",
        "listen_port": "6432",
    }
    # The one database it serves: the local PostgreSQL's stet, with the default pool size.
    databases = {
        row["name"]: row for row in pgbouncer_show(primary, "DATABASES") if row["name"] != "pgbouncer"
    }
    assert list(databases) == ["stet"]
    stet = databases["stet"]
    assert (stet["host"], stet["port"], stet["database"], stet["pool_size"]) == (
        "127.0.0.1",
        "5432",
        "stet",
        "25",
    )


def test_pgbouncer_pools_in_transaction_mode(api, primary):
    """A client idle after its transaction holds no server connection (in session mode it would)."""
    output = "/tmp/stet-pgbouncer-session.out"
    session = f"(echo 'SELECT 1;'; sleep 10) | psql -X -A -t -d \"$(cat {URL_FILE})\" >{output} 2>&1"
    started = api.run("rm -f %s && setsid sh -c %s </dev/null >/dev/null 2>&1 &", output, session)
    assert started.rc == 0, started.stderr
    # Once psql printed the answer, its transaction is over and the session sits idle.
    deadline = time.monotonic() + 8
    while api.run("cat %s", output).stdout.strip() != "1":
        assert time.monotonic() < deadline, api.run("cat %s", output).stdout
        time.sleep(0.2)
    pools = [row for row in pgbouncer_show(primary, "POOLS") if row["database"] == "stet"]
    assert len(pools) == 1, pools
    pool = pools[0]
    assert (pool["user"], pool["pool_mode"]) == ("stet", "transaction")
    # The one client is connected; the server connection it used is back in the pool.
    assert (pool["cl_active"], pool["sv_active"]) == ("1", "0"), pool
    assert int(pool["sv_idle"]) + int(pool["sv_used"]) >= 1, pool
