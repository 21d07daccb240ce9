"""Day-two operations on the pilot: the backup jobs and the go-live check."""

from __future__ import annotations

import re

from conftest import DB_HOST, TOPOLOGY, playbook, run_ok


def test_backup_and_test_restore_succeed_and_are_logged(client):
    run_ok(DB_HOST, "/opt/stet/scripts/backup-database.sh")
    run_ok(DB_HOST, "/opt/stet/scripts/test-restore.sh")
    log = run_ok(DB_HOST, "cat /var/log/stet/db-maintenance.log")
    assert "job=backup status=ok" in log
    assert "job=test_restore status=ok" in log


def test_golive_check_passes_on_the_pilot(client):
    TOPOLOGY.assert_golive_check_passes()


def test_diagnose_reports_the_database_and_changes_nothing(client):
    result = playbook("diagnose.yml")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "connections:" in result.stdout
    recap = dict(re.findall(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", result.stdout, re.MULTILINE))
    assert DB_HOST in recap, result.stdout[-2000:]
    assert set(recap.values()) == {"0"}, recap
