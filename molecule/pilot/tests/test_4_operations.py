"""Day-two operations on the pilot: the backup jobs, a restore under load and the go-live check."""

from __future__ import annotations

import collections
import json
import re
import time
import uuid

from conftest import API_HOST, DB_HOST, ROOT_CA, SITE, TOPOLOGY, load, playbook, run_ok
from e2e import is_failure

# Ends the test's slow statement (it runs as application diagnose-test), not the session asking.
CANCEL_DIAGNOSE_TEST = (
    "SELECT pg_cancel_backend(pid) FROM pg_stat_activity"
    " WHERE application_name = 'diagnose-test' AND pid <> pg_backend_pid()"
)
# nginx_maintenance_file: while it exists nginx refuses writes (restore.yml creates it).
MAINTENANCE = "/etc/nginx/stet-maintenance"


def test_backup_and_test_restore_succeed_and_are_logged(client):
    run_ok(DB_HOST, "/opt/stet/scripts/backup-database.sh")
    run_ok(DB_HOST, "/opt/stet/scripts/test-restore.sh")
    log = run_ok(DB_HOST, "cat /var/log/stet/db-maintenance.log")
    assert "job=backup status=ok" in log
    assert "job=test_restore status=ok" in log


def test_golive_check_passes_on_the_pilot(client):
    TOPOLOGY.assert_golive_check_passes()


def test_diagnose_reports_slow_statements_without_their_values_and_changes_nothing(client):
    """A finished slow statement and a running one, each with a value in its text as the API's
    driver sends them: diagnose reports both, normalised or by id, and prints neither value."""
    finished, running = (f"diagnose-canary-{uuid.uuid4().hex}" for _ in range(2))
    as_postgres = "runuser -u postgres -- env PGAPPNAME=diagnose-test psql -X -q -d stet -c"
    run_ok(DB_HOST, f"{as_postgres} \"SELECT pg_sleep(1.2), '{finished}'\"")
    run_ok(DB_HOST, f"setsid -f {as_postgres} \"SELECT pg_sleep(30), '{running}'\" >/dev/null 2>&1")
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
