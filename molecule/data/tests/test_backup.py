"""Backups that are proven to restore, heartbeat archival and the maintenance schedule."""

from __future__ import annotations

import json

import pytest
from conftest import PRIMARY, SCRIPTS, run_ok, sql

testinfra_hosts = [f"docker://{PRIMARY}"]

BACKUP_DIR = "/var/backups/stet"
TABLES_QUERY = (
    "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'"
)
HEARTBEATS = "SELECT count(*) FROM enforcement_heartbeats"
CORRECTIONS = "SELECT count(*) FROM corrections"
TENANT = "00000000-0000-0000-0000-000000000001"
# Shapes the API writes (spec: origin {service, version, environment}; permissions name readers or scopes).
ORIGIN = '{"service": "stet-api", "version": "test", "environment": "molecule"}'
PERMISSIONS = '{"readers": ["ops"], "scopes": ["support"], "deny_list": []}'


def as_stet(statement: str) -> str:
    return f"SET ROLE stet; {statement}"


def insert_corrections(host, subject_id: str, idempotency_key: str, source: str = "") -> None:
    """Corrections owned like the API's rows: one per row of `source` (a FROM clause; one row
    without it), with subject_id and idempotency_key given as SQL expressions over it."""
    sql(
        host,
        as_stet(
            "INSERT INTO corrections (correction_id, tenant_id, subject_type, subject_id, field_key, value,"
            " class, status, permissions, actor_type, actor_id, idempotency_key, origin)"
            f" SELECT gen_random_uuid(), :'tenant', 'user', {subject_id}, 'email', '\"a@b.c\"', 'FACT',"
            f" 'ACTIVE', :'permissions', 'human', 'ops', {idempotency_key}, :'origin' {source}"
        ),
        tenant=TENANT,
        permissions=PERMISSIONS,
        origin=ORIGIN,
    )


@pytest.fixture(scope="module")
def seeded(primary):
    """40 heartbeats (15 of them 100 days old) and 5 corrections, owned like the API's rows."""
    # From a known state, so verify can run again on the same hosts.
    sql(primary, as_stet("DROP TABLE IF EXISTS enforcement_heartbeats_archive"))
    sql(primary, as_stet("TRUNCATE enforcement_heartbeats, corrections"))
    sql(
        primary,
        as_stet(
            "INSERT INTO enforcement_heartbeats (heartbeat_id, tenant_id, system_id,"
            " enforced_correction_version, origin, reported_at)"
            " SELECT gen_random_uuid(), :'tenant', 'sys-' || i, now(), :'origin',"
            " now() - CASE WHEN i <= 15 THEN interval '100 days' ELSE interval '1 hour' END"
            " FROM generate_series(1, 40) i"
        ),
        tenant=TENANT,
        origin=ORIGIN,
    )
    insert_corrections(primary, "'u' || i", "'k' || i", "FROM generate_series(1, 5) i")
    return {"heartbeats": sql(primary, HEARTBEATS), "corrections": sql(primary, CORRECTIONS)}


def last_log_line(host) -> str:
    return run_ok(host, "tail -n 1 /var/log/stet/db-maintenance.log")


def test_backup_restore_round_trip_loses_no_row(primary, seeded):
    tables = sql(primary, TABLES_QUERY)
    out = run_ok(primary, f"{SCRIPTS}/backup-database.sh")
    assert "job=backup status=ok exit=0" in out and out == last_log_line(primary)
    # Custom format (already compressed), not gzipped again, and readable by pg_restore.
    assert run_ok(primary, f"head -c 5 {BACKUP_DIR}/latest.dump") == "PGDMP"
    run_ok(primary, f"pg_restore --list {BACKUP_DIR}/latest.dump")

    sql(primary, "DROP TABLE corrections CASCADE")
    sql(primary, "DELETE FROM enforcement_heartbeats")
    assert sql(primary, HEARTBEATS) == "0"

    out = run_ok(primary, f"{SCRIPTS}/restore-database.sh")
    assert "job=restore status=ok exit=0" in out and "verified=row_counts" in out
    assert sql(primary, TABLES_QUERY) == tables
    assert {"heartbeats": sql(primary, HEARTBEATS), "corrections": sql(primary, CORRECTIONS)} == seeded
    assert sql(primary, "SELECT tableowner FROM pg_tables WHERE tablename = 'corrections'") == "stet"


def test_test_restore_passes_and_drops_its_scratch_database(primary, seeded):
    out = run_ok(primary, f"runuser -u postgres -- {SCRIPTS}/test-restore.sh")
    assert "job=test_restore status=ok exit=0" in out
    assert sql(primary, "SELECT count(*) FROM pg_database WHERE datname = 'stet_restore_test'") == "0"


def test_test_restore_fails_when_the_dump_does_not_match(primary, seeded):
    manifest = run_ok(primary, f"readlink -f {BACKUP_DIR}/latest.counts")
    run_ok(primary, f"cp -p {manifest} /root/manifest.saved")
    try:
        run_ok(primary, rf"sed -i 's/^public.corrections|.*/public.corrections|999/' {manifest}")
        result = primary.run(f"runuser -u postgres -- {SCRIPTS}/test-restore.sh")
        assert result.rc == 6, result.stdout + result.stderr
        assert "status=mismatch" in result.stdout and "public.corrections|999" in result.stdout
    finally:
        run_ok(primary, f"cp -p /root/manifest.saved {manifest}")


def test_two_backups_never_overlap(primary):
    result = primary.run(f"flock {BACKUP_DIR}/.backup.lock {SCRIPTS}/backup-database.sh")
    assert result.rc == 3
    assert "job=backup status=skipped" in result.stdout
    assert "exit=3 reason=another_backup_running" in result.stdout


def test_no_restore_while_a_backup_runs(primary, seeded):
    # A row the latest dump does not hold: a restore would remove it.
    insert_corrections(primary, "'u-late'", "'k-late'")
    try:
        result = primary.run(f"flock {BACKUP_DIR}/.backup.lock {SCRIPTS}/restore-database.sh")
        assert result.rc == 3, result.stdout + result.stderr
        assert "job=restore status=failed exit=3 reason=backup_running" in result.stdout
        assert sql(primary, "SELECT count(*) FROM corrections WHERE idempotency_key = 'k-late'") == "1"
    finally:
        sql(primary, as_stet("DELETE FROM corrections WHERE idempotency_key = 'k-late'"))


def test_archive_moves_only_old_heartbeats(primary, seeded):
    before = int(sql(primary, HEARTBEATS))
    out = run_ok(primary, f"runuser -u postgres -- {SCRIPTS}/archive-heartbeats.sh")
    assert "job=archive_heartbeats status=ok exit=0 moved=15" in out
    assert int(sql(primary, HEARTBEATS)) == before - 15
    assert (
        sql(
            primary,
            "SELECT count(*) FROM enforcement_heartbeats WHERE reported_at < now() - interval '90 days'",
        )
        == "0"
    )
    assert (
        sql(
            primary,
            "SELECT count(*) || ':' || pg_get_userbyid(relowner)"
            " FROM enforcement_heartbeats_archive, pg_class"
            " WHERE relname = 'enforcement_heartbeats_archive' GROUP BY relowner",
        )
        == "15:stet"
    )


CRON_FILE = "/etc/cron.d/stet-db-maintenance"
PGBACKREST_CRON = "/etc/cron.d/stet-pgbackrest"
# The guide's schedule (Database Maintenance Jobs, Backup & Recovery): (when, user) -> command.
EXPECTED_CRON = {
    ("0 2 * * *", "postgres"): f'{SCRIPTS}/on-primary psql -X -q -d stet -c "VACUUM ANALYZE;"',
    ("0 3 * * *", "root"): f"{SCRIPTS}/on-primary {SCRIPTS}/backup-database.sh",
    ("0 4 1 * *", "postgres"): f"{SCRIPTS}/on-primary {SCRIPTS}/archive-heartbeats.sh",
}
# The dump's test restore on the primary is not scheduled: the scenario has a pgBackRest
# repository host, whose weekly test restore runs off the primary (test_pgbackrest.py).


def crontab(host, cron_file: str = CRON_FILE) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    """The file's environment lines, and its entries as (schedule, user) -> command."""
    environment, entries = {}, {}
    for line in host.file(cron_file).content_string.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if "=" in line.split()[0]:
            name, _, value = line.partition("=")
            environment[name.strip()] = value.strip()
            continue
        fields = line.split(maxsplit=6)
        assert len(fields) == 7, line
        entries[(" ".join(fields[:5]), fields[5])] = fields[6]
    return environment, entries


def run_like_cron(host, job: str, cron_file: str = CRON_FILE):
    """Run the entry whose command contains `job` as cron would: as its user, in its home,
    with only cron's environment (LOGNAME, HOME, SHELL, PATH) and the file's own variables."""
    environment, entries = crontab(host, cron_file)
    [(user, command)] = [(user, command) for (_, user), command in entries.items() if job in command]
    assert "%" not in command  # cron would turn it into a newline
    home = run_ok(host, f"getent passwd {user} | cut -d: -f6")
    # The file may set SHELL, PATH and HOME, never LOGNAME.
    variables = {"SHELL": "/bin/sh", "PATH": "/usr/bin:/bin", "HOME": home, **environment, "LOGNAME": user}
    assignments = [f"{name}={value}" for name, value in variables.items()]
    return host.run(
        "runuser -u %s -- env -i -C %s" + " %s" * len(assignments) + " %s -c %s",
        user,
        variables["HOME"],
        *assignments,
        variables["SHELL"],
        command,
    )


def test_maintenance_schedule_is_the_guides(primary):
    cron = primary.file(CRON_FILE)
    assert (cron.user, cron.mode) == ("root", 0o644)
    assert crontab(primary)[1] == EXPECTED_CRON
    assert "PGPASSWORD" not in cron.content_string and "://" not in cron.content_string
    for command in EXPECTED_CRON.values():
        for word in command.split():
            if word.startswith(SCRIPTS):
                assert primary.file(word).mode == 0o755, word
    assert primary.service("cron").is_running


def test_cron_vacuum_analyzes_the_stet_tables(primary):
    started = sql(primary, "SELECT now()")
    job = run_like_cron(primary, "VACUUM ANALYZE")
    assert job.rc == 0 and job.stdout + job.stderr == "", job.stdout + job.stderr
    tables = "FROM pg_stat_user_tables WHERE schemaname = 'public'"
    assert int(sql(primary, f"SELECT count(*) {tables}")) >= 2
    assert (
        sql(
            primary,
            f"SELECT string_agg(relname, ',') {tables}"
            " AND NOT (last_vacuum >= :'started' AND last_analyze >= :'started')",
            started=started,
        )
        == ""
    )


def test_cron_backup_writes_a_new_dump_and_logs_it(primary):
    before = run_ok(primary, f"readlink -f {BACKUP_DIR}/latest.dump")
    job = run_like_cron(primary, "backup-database.sh")
    assert job.rc == 0, job.stdout + job.stderr
    after = run_ok(primary, f"readlink -f {BACKUP_DIR}/latest.dump")
    assert after != before
    run_ok(primary, f"pg_restore --list {after}")
    assert "job=backup status=ok exit=0" in last_log_line(primary)


def test_cron_archive_moves_old_heartbeats_and_logs_it(primary):
    sql(
        primary,
        as_stet(
            "INSERT INTO enforcement_heartbeats (heartbeat_id, tenant_id, system_id,"
            " enforced_correction_version, origin, reported_at)"
            " SELECT gen_random_uuid(), :'tenant', 'cron-' || i, now(), :'origin',"
            " now() - interval '100 days' FROM generate_series(1, 4) i"
        ),
        tenant=TENANT,
        origin=ORIGIN,
    )
    old = int(
        sql(
            primary,
            "SELECT count(*) FROM enforcement_heartbeats WHERE reported_at < now() - interval '90 days'",
        )
    )
    archived = "SELECT count(*) FROM enforcement_heartbeats_archive WHERE system_id LIKE 'cron-%'"
    job = run_like_cron(primary, "archive-heartbeats.sh")
    assert job.rc == 0, job.stdout + job.stderr
    assert f"job=archive_heartbeats status=ok exit=0 moved={old} " in last_log_line(primary)
    assert sql(primary, "SELECT count(*) FROM enforcement_heartbeats WHERE system_id LIKE 'cron-%'") == "0"
    assert sql(primary, archived) == "4"


def test_cron_test_restore_runs_off_the_primary_and_logs_it(api):
    # With a repository host, the scheduled test restore is pgBackRest's, on that host.
    _, entries = crontab(api, PGBACKREST_CRON)
    assert ("0 5 * * 6", "root") in entries
    job = run_like_cron(api, "pgbackrest-test-restore.py", PGBACKREST_CRON)
    assert job.rc == 0, job.stdout + job.stderr
    assert "job=pgbackrest_test_restore status=ok exit=0" in last_log_line(api)


def test_cron_backs_up_in_full_on_sundays_and_differentially_on_the_other_days(api):
    _, entries = crontab(api, PGBACKREST_CRON)
    backups = {
        when: command for (when, user), command in entries.items() if "pgbackrest-backup.sh" in command
    }
    assert backups == {
        "0 3 * * 0": f"{SCRIPTS}/pgbackrest-backup.sh full >/dev/null",
        "0 3 * * 1-6": f"{SCRIPTS}/pgbackrest-backup.sh diff >/dev/null",
    }
    assert all(user == "root" for (_, user), command in entries.items() if command in backups.values())

    def differentials() -> list[str]:
        info = run_ok(api, "runuser -u postgres -- pgbackrest --stanza=stet --output=json info")
        return [backup["label"] for backup in json.loads(info)[0]["backup"] if backup["type"] == "diff"]

    before = differentials()
    job = run_like_cron(api, "pgbackrest-backup.sh diff", PGBACKREST_CRON)
    assert job.rc == 0, job.stdout + job.stderr
    (new,) = set(differentials()) - set(before)
    assert "job=pgbackrest_backup status=ok" in last_log_line(api) and new in last_log_line(api)
