"""PgBouncer on the primary, reached by the API host through its DATABASE_URL."""

from __future__ import annotations

from conftest import PRIMARY, run_ok

testinfra_hosts = [f"docker://{PRIMARY}"]

URL_FILE = "/etc/stet/secrets/database_url"


def test_api_database_url_points_at_pgbouncer_and_is_root_only(api, primary):
    url = api.file(URL_FILE)
    assert (url.user, url.group, url.mode) == ("root", "root", 0o600)
    primary_address = run_ok(api, f"getent ahostsv4 {PRIMARY} | awk 'NR == 1 {{print $1}}'")
    assert url.content_string.startswith("postgresql://stet:")
    assert url.content_string.endswith(f"@{primary_address}:6432/stet")


def test_api_host_queries_through_pgbouncer_with_the_stet_password(api):
    # The backend sees the connection arrive on 5432 from PgBouncer on 127.0.0.1.
    out = run_ok(
        api,
        f'psql -X -A -t -d "$(cat {URL_FILE})"'
        ' -c "SELECT current_user, inet_server_port(), inet_client_addr()"',
    )
    assert out == "stet|5432|127.0.0.1"


def test_wrong_password_is_refused_by_pgbouncer(api, primary):
    primary_address = run_ok(api, f"getent ahostsv4 {PRIMARY} | awk 'NR == 1 {{print $1}}'")
    result = api.run(f"psql -X -d 'postgresql://stet:wrong@{primary_address}:6432/stet' -c 'SELECT 1'")
    assert result.rc != 0 and "SASL authentication failed" in result.stderr


def test_pgbouncer_listens_on_private_address_and_loopback_only(primary):
    primary_address = run_ok(primary, "hostname -I | awk '{print $1}'")
    listening = set(run_ok(primary, "ss -Hltn 'sport = :6432' | awk '{print $4}'").split())
    assert listening == {f"{primary_address}:6432", "127.0.0.1:6432"}


def test_pgbouncer_pools_in_transaction_mode_with_the_guide_sizes(primary):
    ini = primary.file("/etc/pgbouncer/pgbouncer.ini").content_string
    for line in (
        "pool_mode = transaction",
        "max_client_conn = 200",
        "default_pool_size = 25",
        "auth_type = scram-sha-256",
    ):
        assert line in ini.splitlines()
    assert primary.service("pgbouncer").is_running
