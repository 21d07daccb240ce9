"""pgBackRest: a repository off the database hosts, encrypted, WAL archived, restored to a point in time.

The repository is the API host's (the stet_backup group), on a 256 MiB tmpfs of its own
(prepare.yml), so a test can fill it. The tests run in file order: the restore is last.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from conftest import API, PRIMARY, SCRIPTS, address, ansible_playbook, run_ok, sql

testinfra_hosts = [f"docker://{API}"]

REPOSITORY = "/var/lib/pgbackrest"
BACKUP_JOB = f"{SCRIPTS}/pgbackrest-backup.sh"
TEST_RESTORE_JOB = f"{SCRIPTS}/pgbackrest-test-restore.py"
TEST_RESTORE_METRICS = "/var/lib/stet/metrics/stet_db_job_pgbackrest_test_restore.prom"
FILLER = f"{REPOSITORY}/filler"


def pgbackrest(host, arguments: str) -> str:
    return run_ok(host, f"runuser -u postgres -- pgbackrest --stanza=stet {arguments}")


def stanza_info(api) -> dict:
    return json.loads(pgbackrest(api, "--output=json info"))[0]


def backup_labels(api) -> list[str]:
    return [backup["label"] for backup in stanza_info(api)["backup"]]


def postmaster_pid(host) -> str:
    return run_ok(host, "head -n 1 /var/lib/postgresql/15/main/postmaster.pid")


def test_the_repository_holds_a_full_backup_and_the_wal_since(api):
    stanza = stanza_info(api)
    assert stanza["status"]["code"] == 0, stanza["status"]
    assert [backup for backup in stanza["backup"] if backup["type"] == "full"], stanza["backup"]
    archive = stanza["archive"][0]
    assert archive["min"] and archive["max"], archive
    # `check` switches WAL on the primary and waits for the segment in the repository.
    pgbackrest(api, "check")


def test_only_the_repository_host_holds_the_passphrase(api, primary, replica):
    assert run_ok(api, "stat -c '%U %a' /etc/pgbackrest/conf.d/cipher.conf") == "postgres 600"
    for host in (primary, replica):
        assert host.run("grep -rs cipher-pass /etc/pgbackrest /etc/stet").rc == 1


def test_every_repository_file_is_encrypted(api, primary):
    marker = f"in-clear-{uuid.uuid4().hex}"
    sql(primary, "CREATE TABLE IF NOT EXISTS encryption_probe (value text)")
    # Incompressible enough to survive in clear in a WAL segment, were it not encrypted.
    sql(primary, "INSERT INTO encryption_probe SELECT :'marker' FROM generate_series(1, 200)", marker=marker)
    run_ok(api, f"{BACKUP_JOB} incr")
    files = run_ok(api, f"find {REPOSITORY} -type f ! -name .stet-backup.lock").splitlines()
    assert len(files) > 10, files
    # pgBackRest's cipher writes OpenSSL's "Salted__" header first in every file it encrypts.
    headers = run_ok(
        api, f"find {REPOSITORY} -type f ! -name .stet-backup.lock -exec head -c 8 {{}} \\; -printf '\\n'"
    )
    assert set(headers.splitlines()) == {"Salted__"}, headers
    assert api.run(f"grep -rl {marker} {REPOSITORY}").rc == 1
    sql(primary, "DROP TABLE encryption_probe")


def test_backups_come_from_the_standby_and_from_the_primary_when_it_is_down(api, replica):
    job = api.run(f"{BACKUP_JOB} incr")
    assert job.rc == 0 and "status=ok" in job.stdout, job.stdout + job.stderr
    assert "source=standby" in job.stdout
    # pgBackRest waited for the standby to replay up to the backup's start, then copied from it.
    log = run_ok(api, "tail -n 40 /var/log/pgbackrest/stet-backup.log")
    assert "replay on the standby reached" in log, log
    labels = backup_labels(api)
    run_ok(replica, "systemctl stop postgresql@15-main")
    try:
        job = api.run(f"{BACKUP_JOB} incr")
    finally:
        run_ok(replica, "systemctl start postgresql@15-main")
    assert job.rc == 0 and "status=ok" in job.stdout, job.stdout + job.stderr
    assert "source=primary" in job.stdout
    assert len(backup_labels(api)) == len(labels) + 1


def test_a_full_repository_fails_the_backup_loudly_and_counts_nothing(api, primary):
    labels = backup_labels(api)
    free_kib = int(run_ok(api, f"df --output=avail -k {REPOSITORY} | tail -n 1"))
    run_ok(api, f"fallocate -l {(free_kib - 512) * 1024} {FILLER}")
    try:
        # The job's own check refuses before pgBackRest writes anything.
        job = api.run(f"{BACKUP_JOB} full")
        assert job.rc == 4, job.stdout + job.stderr
        assert "status=failed exit=4 type=full reason=repository_space" in job.stdout
        assert "reason=repository_space" in run_ok(api, "tail -n 1 /var/log/stet/db-maintenance.log")
        # pgBackRest itself meeting the full disk half-way: it fails, and the half-written
        # backup is not one the repository counts (nor restores from).
        direct = api.run("runuser -u postgres -- pgbackrest --stanza=stet --type=full backup")
        assert direct.rc != 0, direct.stdout
        assert backup_labels(api) == labels
        # PostgreSQL keeps taking writes meanwhile (archiving waits; WAL stays on the primary).
        sql(primary, "CREATE TABLE disk_full_probe (n int)")
        sql(primary, "INSERT INTO disk_full_probe SELECT generate_series(1, 100)")
        assert sql(primary, "SELECT count(*) FROM disk_full_probe") == "100"
    finally:
        api.run(f"rm -f {FILLER}")
        primary.run("runuser -u postgres -- psql -X -q -d stet -c 'DROP TABLE IF EXISTS disk_full_probe'")
    # With room again the next run succeeds, and archiving has caught up.
    job = api.run(f"{BACKUP_JOB} diff")
    assert job.rc == 0, job.stdout + job.stderr
    assert len(backup_labels(api)) == len(labels) + 1
    pgbackrest(api, "check")


def expire_days_ahead(api, days: int) -> None:
    """pgBackRest's retention (the job's first step) as the repository will run it in `days`."""
    run_ok(api, f"runuser -u postgres -- faketime -f +{days}d pgbackrest --stanza=stet expire")


def test_retention_keeps_30_days_of_recovery_points_and_their_wal(api):
    """repo1-retention-full-type=time, 30 days: with the clock moved ahead, nothing goes before
    30 days; after them the older full backup goes with the backups and WAL that depend on it,
    and the newest full one stays (it is the way to restore to any point of the last 30 days)."""
    job = api.run(f"{BACKUP_JOB} full")
    assert job.rc == 0, job.stdout + job.stderr
    backups = stanza_info(api)["backup"]
    fulls = [backup for backup in backups if backup["type"] == "full"]
    assert len(fulls) >= 2, backups
    newest = fulls[-1]
    labels = [backup["label"] for backup in backups]

    expire_days_ahead(api, 29)
    assert backup_labels(api) == labels

    expire_days_ahead(api, 40)
    stanza = stanza_info(api)
    assert [backup["label"] for backup in stanza["backup"]] == [newest["label"]]
    # WAL from before the remaining backup is gone, and what it needs is kept.
    assert stanza["archive"][0]["min"] == newest["archive"]["start"], (stanza["archive"], newest["archive"])
    pgbackrest(api, "check")


def public_tables(primary, persistence: str) -> str:
    """Names of the public tables that are logged ('p') or unlogged ('u'), comma-separated, or 'none'."""
    return sql(
        primary,
        "SELECT coalesce(string_agg(name, ',' ORDER BY name), 'none') FROM ("
        " SELECT format('%I.%I', n.nspname, c.relname) AS name FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relpersistence = :'persistence') AS t",
        persistence=persistence,
    )


@pytest.fixture
def metrics_dir(api):
    """The node exporter's textfile directory, which the monitoring role (not in this scenario) makes."""
    run_ok(api, f"install -d -m 0755 {TEST_RESTORE_METRICS.rsplit('/', 1)[0]}")


def test_the_test_restore_matches_the_primary_while_writes_go_on(api, primary, metrics_dir):
    sql(primary, "SET ROLE stet; DROP TABLE IF EXISTS test_restore_probe")
    sql(primary, "SET ROLE stet; CREATE TABLE test_restore_probe (n int)")
    # Writes all through the run: the marked point must cut them exactly where the restore stops.
    writer = (
        "for i in $(seq 1 1500); do runuser -u postgres -- psql -X -q -d stet"
        ' -c "INSERT INTO test_restore_probe VALUES ($i)"; sleep 0.02; done'
    )
    primary.run(f"nohup bash -c '{writer}' >/dev/null 2>&1 &")
    time.sleep(1)
    before = int(sql(primary, "SELECT count(*) FROM test_restore_probe"))
    job = api.run(TEST_RESTORE_JOB)
    after = int(sql(primary, "SELECT count(*) FROM test_restore_probe"))
    primary.run("pkill -f 'seq 1 1500' || true")
    assert job.rc == 0, job.stdout + job.stderr
    fields = dict(word.split("=", 1) for word in job.stdout.split() if "=" in word)
    assert fields["status"] == "ok" and fields["job"] == "pgbackrest_test_restore", job.stdout
    assert int(fields["tables"]) == len(public_tables(primary, "p").split(","))
    assert int(fields["rows"]) > 0
    # Unlogged tables come back empty by design: named, not compared.
    assert fields["unlogged"] == public_tables(primary, "u")
    # The primary took writes while the point was marked and the copy compared.
    assert 0 < before < after, (before, after)
    metrics = run_ok(api, f"cat {TEST_RESTORE_METRICS}")
    assert 'stet_db_job_last_exit_code{task="pgbackrest_test_restore"} 0' in metrics
    assert "stet_db_job_last_success_timestamp_seconds" in metrics
    # Nothing of the scratch instance is left running or on disk.
    assert api.run("pgrep -f '[p]gbackrest-test-restore/data'").rc == 1
    assert api.run("test -e /var/lib/pgbackrest-test-restore").rc == 1
    sql(primary, "DROP TABLE test_restore_probe")


def test_the_test_restore_fails_loudly_on_a_damaged_repository(api, metrics_dir):
    # Every backup holds its own pg_control: damage the newest one's, as a bad disk would.
    label = backup_labels(api)[-1]
    control = f"{REPOSITORY}/backup/stet/{label}/pg_data/global/pg_control.zst"
    run_ok(api, f"cp -p {control} /root/pg_control.zst.good")
    try:
        run_ok(api, f"printf 'damage' | dd of={control} bs=1 seek=48 conv=notrunc status=none")
        job = api.run(TEST_RESTORE_JOB)
    finally:
        run_ok(api, f"mv -f /root/pg_control.zst.good {control}")
    assert job.rc == 5, job.stdout + job.stderr
    assert "status=failed exit=5 reason=pgbackrest " in job.stdout
    assert "reason=pgbackrest" in run_ok(api, "tail -n 1 /var/log/stet/db-maintenance.log")
    metrics = run_ok(api, f"cat {TEST_RESTORE_METRICS}")
    assert 'stet_db_job_last_exit_code{task="pgbackrest_test_restore"} 5' in metrics
    # The last good run's time stays for the "too old" alert.
    assert "stet_db_job_last_success_timestamp_seconds" in metrics
    assert api.run("test -e /var/lib/pgbackrest-test-restore").rc == 1
    # With the file whole again the repository restores.
    assert api.run(TEST_RESTORE_JOB).rc == 0


def test_the_test_restore_role_reads_and_marks_but_cannot_write(api):
    """Its password sits on the repository host: what it can do there is what a thief could."""

    def as_verify_role(statement: str):
        return api.run(
            "PGPASSFILE=/etc/stet/secrets/pgbackrest_verify.pgpass"
            " psql -X -q -At -h %s -U stet_verify -d stet -c %s",
            address(PRIMARY),
            statement,
        )

    read = as_verify_role("SELECT count(*) >= 0 FROM corrections")
    assert read.rc == 0 and read.stdout.strip() == "t", read.stderr
    for statement in (
        "DELETE FROM corrections",
        "CREATE TABLE intruder (n int)",
        "LOCK TABLE corrections IN ACCESS EXCLUSIVE MODE",
    ):
        refused = as_verify_role(f"BEGIN; {statement}; ROLLBACK")
        assert refused.rc != 0 and "permission denied" in refused.stderr, (statement, refused.stderr)


@pytest.fixture
def rebuilt_primary(primary):
    """The primary's data directory swapped for a new, empty cluster (a rebuilt host); put back after."""
    data = "/var/lib/postgresql/15/main"
    run_ok(primary, "pg_ctlcluster 15 main stop -m fast")
    run_ok(primary, f"mv {data} {data}.kept")
    try:
        run_ok(primary, f"install -d -o postgres -g postgres -m 0700 {data}")
        run_ok(primary, f"runuser -u postgres -- /usr/lib/postgresql/15/bin/initdb -D {data} --auth=peer")
        run_ok(primary, "pg_ctlcluster 15 main start")
        yield
    finally:
        primary.run("pg_ctlcluster 15 main stop -m fast")
        primary.run(f"rm -rf {data} && mv {data}.kept {data}")
        run_ok(primary, "pg_ctlcluster 15 main start")


def test_a_rebuilt_primary_is_named_with_the_way_back_and_the_repository_is_untouched(
    request, api, primary, rebuilt_primary
):
    stanza_files = f"{REPOSITORY}/backup/stet/backup.info {REPOSITORY}/archive/stet/archive.info"
    before = run_ok(api, f"sha256sum {stanza_files}")
    result = ansible_playbook(request, "pgbackrest.yml")
    assert result.returncode != 0
    output = " ".join((result.stdout + result.stderr).split())
    new_system = sql(primary, "SELECT system_identifier FROM pg_control_system()", db="postgres")
    assert f"runs system {new_system}: a new, empty cluster" in output, output[-3000:]
    assert "playbooks/restore.yml -i" in output
    assert "-e restore_confirm=yes -e restore_safety_backup=false" in output
    assert run_ok(api, f"sha256sum {stanza_files}") == before


def test_restore_refuses_without_a_confirmation(request, primary):
    pid = postmaster_pid(primary)
    result = ansible_playbook(request, "../../playbooks/restore.yml")
    assert result.returncode != 0
    # Molecule's callback may wrap the message: compare with the blanks folded.
    output = " ".join((result.stdout + result.stderr).split())
    assert "confirm with -e restore_confirm=yes" in output and "Nothing was stopped or changed." in output
    assert postmaster_pid(primary) == pid


@pytest.fixture
def probe_rows(primary):
    """A table with rows 1..50 written before a noted time and 51..80 after it, then dropped."""
    sql(primary, "SET ROLE stet; DROP TABLE IF EXISTS pitr_probe; CREATE TABLE pitr_probe (n int)")
    sql(primary, "INSERT INTO pitr_probe SELECT generate_series(1, 50)")
    time.sleep(1)
    noted = sql(
        primary, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'"
    )
    time.sleep(1)
    sql(primary, "INSERT INTO pitr_probe SELECT generate_series(51, 80)")
    sql(primary, "DROP TABLE pitr_probe")
    return noted


def test_point_in_time_restore_gives_exactly_the_rows_before_the_noted_time(
    request, primary, replica, api, probe_rows
):
    backups_before = len(backup_labels(api))
    result = ansible_playbook(
        request,
        "../../playbooks/restore.yml",
        "-e",
        "restore_confirm=yes",
        "-e",
        f"restore_target_time='{probe_rows}'",
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    assert sql(primary, "SELECT count(*), min(n), max(n) FROM pitr_probe") == "50|1|50"
    # A safety backup of the state before the restore, and a full backup of the new timeline after.
    backups = stanza_info(api)["backup"]
    assert len(backups) == backups_before + 2
    assert backups[-1]["type"] == "full"
    # The primary takes writes on a new timeline, archived like before.
    assert sql(primary, "SELECT pg_is_in_recovery()") == "f"
    # No recovery setting is left behind, nor any setting waiting for a restart.
    assert sql(primary, "SELECT count(*) FROM pg_settings WHERE pending_restart") == "0"
    auto_conf = "/var/lib/postgresql/15/main/postgresql.auto.conf"
    assert run_ok(primary, f"grep -c recovery_target {auto_conf} || true") == "0"
    assert sql(primary, "SELECT timeline_id > 1 FROM pg_control_checkpoint()") == "t"
    pgbackrest(api, "check")
    # The standby was rebuilt from the restored primary and streams from it.
    sql(primary, "INSERT INTO pitr_probe VALUES (81)")
    for _ in range(30):
        if sql(replica, "SELECT count(*) FROM pitr_probe") == "51":
            break
        time.sleep(1)
    assert sql(replica, "SELECT count(*) FROM pitr_probe") == "51"
    assert sql(primary, "SELECT state FROM pg_stat_replication") == "streaming"
    sql(primary, "DROP TABLE pitr_probe")
