"""Day-two operations on the pilot: the backup jobs, a restore under load and the go-live check."""

from __future__ import annotations

import collections
import json
import re
import time
import uuid

from conftest import API_HOST, DB_HOST, PORTS, ROOT_CA, SITE, TOPOLOGY, host, load, main_pid, playbook, run_ok
from e2e import is_failure

# Ends the test's slow statement (it runs as application diagnose-test), not the session asking.
CANCEL_DIAGNOSE_TEST = (
    "SELECT pg_cancel_backend(pid) FROM pg_stat_activity"
    " WHERE application_name = 'diagnose-test' AND pid <> pg_backend_pid()"
)
# nginx_maintenance_file: while it exists nginx refuses writes (restore.yml creates it).
MAINTENANCE = "/etc/nginx/stet-maintenance"


def test_backup_and_test_restore_succeed_and_are_logged(client):
    # The operator's playbooks, which run the backup role's scripts on the leader.
    assert playbook("backup.yml").returncode == 0
    result = playbook("test-restore.yml")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "job=test_restore status=ok" in result.stdout
    log = run_ok(DB_HOST, "cat /var/log/stet/db-maintenance.log")
    assert "job=backup status=ok" in log
    assert "job=test_restore status=ok" in log


def test_golive_check_passes_on_the_pilot_with_its_job_logs_rotated(client):
    """The job logs rotate daily and are compressed from the second day on: a weekly job's
    newest success is most days in a compressed file, which the check reads too."""
    job_log = "/var/log/stet/db-maintenance.log"
    rotate = "logrotate --force /etc/logrotate.d/stet"
    run_ok(DB_HOST, rotate)
    # A line of another job in the new log, so that the next rotation does not skip it as empty.
    run_ok(DB_HOST, "runuser -u postgres -- /opt/stet/scripts/archive-heartbeats.sh")
    run_ok(DB_HOST, rotate)
    run_ok(API_HOST, rotate)
    # The backup's success is now only in the compressed file.
    assert run_ok(DB_HOST, f"zgrep -c 'job=backup status=ok' {job_log}.2.gz").strip() != "0"
    assert host(DB_HOST).run(f"grep -q 'job=backup status=ok' {job_log} {job_log}.1").rc == 1
    TOPOLOGY.assert_golive_check_passes()


def test_diagnose_reports_slow_statements_without_their_values_and_changes_nothing(client):
    """A finished slow statement and a running one, each with a value in its text as the API's
    driver sends them: diagnose reports both, normalised or by id, and prints neither value."""
    finished, running = (f"diagnose-canary-{uuid.uuid4().hex}" for _ in range(2))
    as_postgres = "runuser -u postgres -- env PGAPPNAME=diagnose-test psql -X -q -d stet -c"
    run_ok(DB_HOST, f"{as_postgres} \"SELECT pg_sleep(1.2), '{finished}'\"")
    # Long enough to outlast the playbook on a busy machine (one CI run took 37 s to reach the
    # query); the cancel below ends it.
    run_ok(DB_HOST, f"setsid -f {as_postgres} \"SELECT pg_sleep(600), '{running}'\" >/dev/null 2>&1")
    try:
        result = playbook("diagnose.yml", "-e", "diagnose_slow_query_seconds=1")
    finally:
        run_ok(DB_HOST, f'{as_postgres} "{CANCEL_DIAGNOSE_TEST}"')
    assert result.returncode == 0, result.stderr[-2000:]
    assert "connections:" in result.stdout
    assert "queries running longer than 1 s: 1" in result.stdout, result.stdout[-3000:]
    assert "SELECT pg_sleep($1), $2" in result.stdout, result.stdout[-3000:]
    assert finished not in result.stdout and running not in result.stdout
    recap = dict(re.findall(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", result.stdout, re.MULTILINE))
    assert DB_HOST in recap, result.stdout[-2000:]
    assert set(recap.values()) == {"0"}, recap


def test_a_restore_under_load_refuses_writes_cleanly_and_keeps_every_acknowledged_one(client):
    """restore.yml to the latest archived WAL while reads and writes go through nginx: writes
    are refused with nginx's 503 MAINTENANCE from before the safety backup, so the restore
    discards none that was acknowledged; reads answer until PostgreSQL stops (503 while it
    is down), and the service comes back by itself."""
    with load(max_seconds=900, request_log=True) as traffic:
        time.sleep(3)
        started = time.time()
        result = playbook("restore.yml", "-e", "restore_confirm=yes", timeout=900)
        finished = time.time()
        recovered = traffic.wait_for_service(finished, timeout=120, steady_seconds=10)
    summary = traffic.stop()
    requests = traffic.requests()
    during = [r for r in requests if started <= r["started"] <= finished]
    failed = [r for r in requests if is_failure(r["status"])]
    writes = traffic.corrections_check(DB_HOST)
    print(
        "restore under load:",
        json.dumps(
            {
                "restore_seconds": round(finished - started, 1),
                "sent": summary["sent"],
                "during_restore": collections.Counter(f"{r['kind']} {r['status']}" for r in during),
                "failed": len(failed),
                "failed_by_status": collections.Counter(r["status"] for r in failed),
                "back_after_seconds": round(traffic.service_back_after(finished, requests)[0] or 0, 1),
            }
        ),
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert recovered, summary
    # Refusals only: nginx's MAINTENANCE and the API's 503 while PostgreSQL was down; no 500,
    # no 502/504, no write acknowledged and then lost, none taken during the restore.
    assert {r["status"] for r in failed} <= {"503"}, summary
    assert any(r["kind"] == "write" and r["status"] == "503" for r in during), summary
    assert writes["lost"] == [], writes
    assert writes["unacknowledged_commits"] == [], writes
    assert run_ok(API_HOST, f"test -e {MAINTENANCE} && echo on || echo off").strip() == "off"


def test_maintenance_refuses_writes_with_the_apis_error_shape(client):
    """The switch restore.yml uses, on its own: writes refused by nginx, reads served."""
    curl = f"curl -sS --max-time 10 --cacert {ROOT_CA} -o /dev/stdout -w '\\n%{{http_code}}'"
    run_ok(API_HOST, f"touch {MAINTENANCE}")
    try:
        write = run_ok(
            API_HOST, f"{curl} -X POST -H 'Content-Type: application/json' -d '{{}}' {SITE}/v1/corrections"
        )
        read = run_ok(API_HOST, f"{curl} {SITE}/health")
    finally:
        run_ok(API_HOST, f"rm -f {MAINTENANCE}")
    body, _, status = write.rpartition("\n")
    assert status == "503", write
    assert json.loads(body)["error"]["code"] == "MAINTENANCE", body
    assert read.rpartition("\n")[2] == "200", read


def test_a_new_database_password_restarts_every_instance_onto_it(client):
    """The application's database password rotated as an operator would: the primary's secret
    removed, the data tier and then the application tier run again. PostgreSQL, PgBouncer and
    the API host's URL file get the new one; every instance, started with the old URL, is
    restarted onto the new one (one at a time, gated on /ready) instead of failing its next
    login. No load meanwhile: PostgreSQL keeps one password per role, so between the two
    playbooks a new connection with the old one is refused."""
    pids = {port: main_pid(port) for port in PORTS}
    secret = "/etc/stet/secrets/db_password"
    before = run_ok(DB_HOST, f"sha256sum < {secret}")
    run_ok(DB_HOST, f"rm {secret}")
    for name in ("database.yml", "application.yml"):
        result = playbook(name, timeout=1800)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert run_ok(DB_HOST, f"sha256sum < {secret}") != before
    assert all(main_pid(port) != pids[port] for port in PORTS), pids
    with load() as traffic:
        time.sleep(15)
    traffic.assert_nothing_failed_or_lost(DB_HOST, min_reads=100, min_writes=5)


def served_certificate_verifies(ca_file: str, port: int, options: str) -> bool:
    """Whether the certificate the database host serves on `port` verifies against `ca_file`
    (under its name), as a client on the API host would check it."""
    command = (
        f"openssl s_client -connect {DB_HOST}:{port} {options} -verify_return_error"
        f" -verify_hostname {DB_HOST} -CAfile {ca_file} </dev/null"
    )
    return host(API_HOST).run(f"timeout 20 {command}").rc == 0


def test_the_ca_key_rotates_under_load_and_no_request_is_refused(client):
    """rotate-ca.yml while reads and writes go through nginx to PgBouncer (verify-full): no
    request fails, as every host trusts the CA of every certificate it may be shown at each
    step. Then each host trusts the new CA alone, every certificate is signed by it, the old
    key is gone, a client that trusts only the old CA is refused, archiving through the
    pgBackRest servers works, and the finished switch step changes nothing when run again."""
    ca_dir, pki = "/etc/stet/ca", "/etc/ssl/stet-pki"
    trusted = f"{pki}/ca.crt"
    # The pilot's CA host is its pgBackRest repository, the API host.
    old_ca = run_ok(API_HOST, f"cat {ca_dir}/ca.crt")
    for name in (API_HOST, DB_HOST):
        assert run_ok(name, f"cat {trusted}") == old_ca, name
        run_ok(name, f"cp {trusted} /tmp/old-ca.crt")
    with load(max_seconds=900) as traffic:
        time.sleep(3)
        result = playbook("rotate-ca.yml", timeout=900)
        time.sleep(3)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    traffic.assert_nothing_failed_or_lost(DB_HOST, min_reads=100, min_writes=10)

    new_ca = run_ok(API_HOST, f"cat {ca_dir}/ca.crt")
    assert new_ca != old_ca
    assert run_ok(API_HOST, f"ls {ca_dir}").split() == ["ca.crt", "ca.csr", "ca.key"]
    certificates = {DB_HOST: ("postgresql", "pgbouncer", "pgbackrest"), API_HOST: ("pgbackrest",)}
    for name, stems in certificates.items():
        assert run_ok(name, f"cat {trusted}") == new_ca, name
        for stem in stems:
            run_ok(name, f"openssl verify -CAfile {trusted} {pki}/{stem}.crt")
            assert host(name).run(f"openssl verify -CAfile /tmp/old-ca.crt {pki}/{stem}.crt").rc != 0, stem

    run_ok(API_HOST, f"cp {trusted} /tmp/new-ca.crt")
    # PgBouncer, and the pgBackRest server, which also wants the client's certificate.
    client_certificate = f"-cert {pki}/pgbackrest.crt -key {pki}/pgbackrest.key"
    for port, options in ((6432, "-starttls postgres"), (8432, client_certificate)):
        assert served_certificate_verifies("/tmp/new-ca.crt", port, options), port
        assert not served_certificate_verifies("/tmp/old-ca.crt", port, options), port
    run_ok(DB_HOST, "runuser -u postgres -- pgbackrest --stanza=stet check")

    again = playbook("rotate-ca-step.yml", "-e", "pki_ca_rotation_step=switch")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    recap = dict(re.findall(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", again.stdout, re.MULTILINE))
    assert set(recap.values()) == {"0"}, recap
