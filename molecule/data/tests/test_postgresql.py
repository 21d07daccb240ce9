"""PostgreSQL primary and replica: effective settings, checksums, authentication, replication."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from conftest import (
    CA,
    PKI_DIR,
    POSTGRESQL,
    PRIMARY,
    ansible_playbook,
    run_ok,
    served_certificate,
    sql,
    wait_for_streaming_over_tls,
)

# Every test here takes the hosts it needs as fixtures; run each test once.
testinfra_hosts = [f"docker://{PRIMARY}"]

GUIDE_SETTINGS = {
    "listen_addresses": "*",
    "max_connections": "100",
    "superuser_reserved_connections": "3",
    "wal_level": "replica",
    "max_wal_size": "2GB",
    "min_wal_size": "1GB",
    "checkpoint_completion_target": "0.9",
    "hot_standby": "on",
    "max_wal_senders": "3",
    "wal_keep_size": "512MB",
    # Not in the guide: a lost replica's slot may not fill the primary's disk.
    "max_slot_wal_keep_size": "5GB",
    "random_page_cost": "1.1",
    "effective_io_concurrency": "200",
    "log_destination": "stderr",
    "logging_collector": "on",
    "log_directory": "/var/log/postgresql",
    "log_filename": "postgresql-%Y-%m-%d.log",
    "log_rotation_age": "1d",
    "log_rotation_size": "100MB",
    "log_line_prefix": "%t [%p]: [%l-1] user=%u,db=%d,app=%a,client=%h ",
    "log_checkpoints": "on",
    "log_connections": "on",
    "log_disconnections": "on",
    "log_lock_waits": "on",
    "log_statement": "ddl",
    # Not the guide's 1s: a slow-query log would keep the values the API sends in its statements.
    "log_min_duration_statement": "-1",
    # Nor a failing statement's text or its DETAIL (a unique violation names the key's value).
    "log_min_error_statement": "panic",
    "log_error_verbosity": "terse",
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track_utility": "off",
    "password_encryption": "scram-sha-256",
    "data_checksums": "on",
}


@pytest.mark.parametrize("name", sorted(GUIDE_SETTINGS))
def test_guide_setting_is_effective_on_both_servers(primary, replica, name):
    for host in (primary, replica):
        # Brackets keep the trailing space of log_line_prefix visible.
        shown = sql(host, "SELECT '[' || current_setting(:'name') || ']'", name=name)
        assert shown == f"[{GUIDE_SETTINGS[name]}]", host.backend.get_hostname()


def test_primary_memory_settings_are_the_inventory_override(primary):
    shown = {
        name: sql(primary, f"SHOW {name}")
        for name in ("shared_buffers", "effective_cache_size", "maintenance_work_mem", "work_mem")
    }
    assert shown == {
        "shared_buffers": "256MB",
        "effective_cache_size": "768MB",
        "maintenance_work_mem": "64MB",
        "work_mem": "8MB",
    }


def test_replica_memory_settings_are_computed_from_its_ram(replica):
    # The figure Ansible's ansible_memtotal_mb fact is computed from.
    memtotal_mb = int(run_ok(replica, "awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo"))
    in_mb = sql(
        replica,
        "SELECT string_agg(name || '=' || (setting::bigint * pg_size_bytes(coalesce(unit, '1B')) / 1048576),"
        " ',' ORDER BY name) FROM pg_settings WHERE name IN ('shared_buffers', 'effective_cache_size')",
    )
    assert in_mb == f"effective_cache_size={int(memtotal_mb * 0.75)},shared_buffers={int(memtotal_mb * 0.25)}"


def test_only_peer_and_scram_authentication(primary, replica):
    for host in (primary, replica):
        methods = sql(
            host, "SELECT string_agg(DISTINCT auth_method, ',' ORDER BY auth_method) FROM pg_hba_file_rules"
        )
        assert methods == "peer,scram-sha-256"
        assert sql(host, "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL") == "0"


def test_stet_password_is_a_scram_verifier_and_kept_in_a_root_only_file(primary):
    assert (
        sql(primary, "SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = 'stet'") == "SCRAM-SHA-256$"
    )
    for name in ("db_password", "database_url", "db_replication_password"):
        secret = primary.file(f"/etc/stet/secrets/{name}")
        assert (secret.user, secret.group, secret.mode) == ("root", "root", 0o600)
    run_ok(primary, 'psql -X -d "$(cat /etc/stet/secrets/database_url)" -c "SELECT 1"')


@pytest.mark.parametrize("port", [5432, 6432])
def test_api_host_reaches_the_primary(api, port):
    run_ok(api, f"pg_isready -h {PRIMARY} -p {port} -t 5")


@pytest.mark.parametrize("port", [5432, 6432])
def test_outsider_is_refused(outsider, port):
    result = outsider.run(f"pg_isready -h {PRIMARY} -p {port} -t 3")
    assert result.rc == 2, result.stdout  # 2: no response (dropped by the firewall)


def test_replica_host_may_replicate_but_not_open_the_stet_database(replica):
    result = replica.run(f"psql -X -w -h {PRIMARY} -U stet -d stet -c 'SELECT 1'")
    assert result.rc != 0
    assert "no pg_hba.conf entry" in result.stderr


def test_replica_streams_from_the_primary(primary, replica):
    assert sql(replica, "SELECT pg_is_in_recovery()") == "t"
    assert sql(replica, "SELECT status FROM pg_stat_wal_receiver") == "streaming"
    assert (
        sql(primary, "SELECT application_name || ':' || state FROM pg_stat_replication")
        == "stet_data_replica:streaming"
    )
    assert (
        sql(primary, "SELECT slot_name || ':' || active FROM pg_replication_slots")
        == "stet_data_replica:true"
    )


def test_the_replica_slot_can_hold_back_only_a_bounded_amount_of_wal(primary):
    # safe_wal_size: what can still be written before the slot is lost (NULL when unbounded),
    # counted from inside the current segment, so up to one segment more than the setting.
    bounded = (
        "SELECT safe_wal_size BETWEEN 0 AND pg_size_bytes(current_setting('max_slot_wal_keep_size'))"
        " + pg_size_bytes(current_setting('wal_segment_size'))"
        " FROM pg_replication_slots WHERE slot_name = 'stet_data_replica'"
    )
    assert sql(primary, bounded) == "t"


def test_row_written_on_the_primary_is_visible_on_the_replica(primary, replica):
    marker = str(uuid.uuid4())
    sql(primary, "CREATE TABLE IF NOT EXISTS replication_probe (marker text)", db="postgres")
    sql(primary, "INSERT INTO replication_probe VALUES (:'marker')", db="postgres", marker=marker)
    probe = "SELECT count(*) FROM replication_probe WHERE marker = :'marker'"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if sql(replica, probe, db="postgres", marker=marker) == "1":
            return
        time.sleep(1)
    pytest.fail("the row did not reach the replica within 30 s")


def test_server_logs_go_to_the_guide_directory(primary):
    today = run_ok(primary, "date +%Y-%m-%d")
    log = primary.file(f"/var/log/postgresql/postgresql-{today}.log")
    assert log.exists and "connection authorized" in log.content_string


def test_a_slow_statement_is_timed_without_its_values_and_none_reaches_the_log(primary):
    canary = f"slow-canary-{uuid.uuid4().hex}"
    # Sent as the API's driver sends values: inside the statement's text, over the URL it uses.
    url = "$(cat /etc/stet/secrets/database_url)"
    run_ok(primary, f'psql -X -q -d "{url}" -c "SELECT pg_sleep(1.1), \'{canary}\'"')
    timed = "SELECT max(max_exec_time) FROM pg_stat_statements WHERE query = 'SELECT pg_sleep($1), $2'"
    assert float(sql(primary, timed, db="postgres")) >= 1100
    holding = "SELECT count(*) FROM pg_stat_statements WHERE strpos(query, :'canary') > 0"
    assert sql(primary, holding, db="postgres", canary=canary) == "0"
    assert primary.run(f"grep -rlF {canary} /var/log/postgresql").stdout == ""


def test_a_failing_statement_is_logged_without_its_text_or_values(primary):
    canary = f"error-canary-{uuid.uuid4().hex}"
    duplicate = (
        "CREATE TEMP TABLE error_canary (value text PRIMARY KEY);"
        " INSERT INTO error_canary VALUES (:'canary'), (:'canary')"
    )
    # As the API's driver would send it: the value inside the statement's text.
    result = primary.run(
        f"printf '%s\\n' \"{duplicate}\" | runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1"
        f" -v canary={canary} -d stet"
    )
    # The client gets the whole error, the value included; the server's log only the message.
    assert result.rc != 0 and canary in result.stderr, result.stderr
    log = f"/var/log/postgresql/postgresql-{run_ok(primary, 'date +%Y-%m-%d')}.log"
    assert "duplicate key value violates unique constraint" in primary.file(log).content_string
    assert primary.run(f"grep -rlF {canary} /var/log/postgresql").stdout == ""


# The primary's inventory values (../molecule.yml), which the tests below change.
PRIMARY_WORK_MEM = "8MB"
PRIMARY_SHARED_BUFFERS = "256MB"


def server(host) -> dict[str, str]:
    """The postmaster's identity and the settings the role is asked to change."""
    state = dict(
        line.split("=", 1)
        for line in sql(
            host,
            "SELECT 'started=' || extract(epoch FROM pg_postmaster_start_time()) UNION ALL"
            " SELECT 'loaded=' || extract(epoch FROM pg_conf_load_time()) UNION ALL"
            " SELECT 'work_mem=' || current_setting('work_mem') UNION ALL"
            " SELECT 'shared_buffers=' || current_setting('shared_buffers') UNION ALL"
            " SELECT 'pending_restart=' || count(*) FROM pg_settings WHERE pending_restart",
        ).splitlines()
    )
    state["pid"] = run_ok(host, "head -n 1 /var/lib/postgresql/15/main/postmaster.pid")
    return state


def converge_primary(request, *options: str, **settings: str) -> str:
    """Run the postgresql role on the primary, with some of its variables overridden; its output."""
    overrides = [argument for name, value in settings.items() for argument in ("-e", f"{name}={value}")]
    run = ansible_playbook(request, "postgresql.yml", *options, *overrides)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr
    return run.stdout


SETTINGS_FILE = "/etc/postgresql/15/main/conf.d/50-stet.conf"


# Last in this module: they change the primary's settings through the role and restart it.
# The primary keeps the last test's values (work_mem back to the inventory's, shared_buffers
# 128MB); no later test reads them.
def test_a_dry_run_shows_the_change_and_changes_nothing(request, primary):
    """What an operator previews with --check --diff before a change: the role's check mode."""
    before = server(primary)
    written = run_ok(primary, f"sha256sum {SETTINGS_FILE}")
    output = converge_primary(request, "--check", "--diff", postgresql_work_mem="9MB")
    assert re.search(r"^-work_mem = '?8MB'?$", output, re.MULTILINE), output[-4000:]
    assert re.search(r"^\+work_mem = '?9MB'?$", output, re.MULTILINE), output[-4000:]
    assert re.search(r"stet-data-primary\s*: ok=\d+\s+changed=[1-9]", output), output[-2000:]
    # Nothing written, nothing reloaded, nothing restarted.
    assert run_ok(primary, f"sha256sum {SETTINGS_FILE}") == written
    assert server(primary) == before


def test_a_reload_only_setting_and_renewed_certificates_apply_without_a_restart(request, primary):
    """work_mem changed and every certificate of the role due for renewal (it starts 400 days
    before expiry of the 365-day certificates), in one run: the server reloads, serves the new
    certificate at once, and keeps its postmaster; the replica, cut off, connects again and
    its check accepts the new certificate."""
    before = server(primary)
    served_before = served_certificate(primary, POSTGRESQL)
    assert (before["work_mem"], before["pending_restart"]) == (PRIMARY_WORK_MEM, "0")
    converge_primary(request, postgresql_work_mem="9MB", pki_cert_renew_days="400")
    after = server(primary)
    # Reloaded (the configuration was read again), not restarted.
    assert after["work_mem"] == "9MB" and float(after["loaded"]) > float(before["loaded"])
    assert (after["pid"], after["started"]) == (before["pid"], before["started"])
    assert after["pending_restart"] == "0"
    served = served_certificate(primary, POSTGRESQL)
    assert served != served_before
    assert served == run_ok(primary, f"openssl x509 -noout -serial -in {PKI_DIR}/postgresql.crt")
    run_ok(primary, f"openssl verify -CAfile {CA} {PKI_DIR}/postgresql.crt")
    sql(primary, "SELECT pg_terminate_backend(pid) FROM pg_stat_replication")
    wait_for_streaming_over_tls(primary)


def test_a_restart_only_setting_restarts_the_server(request, primary):
    before = server(primary)
    assert (before["shared_buffers"], before["pending_restart"]) == (PRIMARY_SHARED_BUFFERS, "0")
    # work_mem goes back to the inventory's value in the same run, if the test above changed it.
    converge_primary(request, postgresql_shared_buffers="128MB")
    after = server(primary)
    assert (after["shared_buffers"], after["work_mem"]) == ("128MB", PRIMARY_WORK_MEM)
    assert after["pid"] != before["pid"] and float(after["started"]) > float(before["started"])
    assert after["pending_restart"] == "0"
    # The replica follows the restarted primary again.
    wait_for_streaming_over_tls(primary)
