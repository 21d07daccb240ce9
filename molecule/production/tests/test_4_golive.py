"""The go-live check on the whole production topology, after the operations above ran."""

from __future__ import annotations

from conftest import API_HOSTS, TOPOLOGY, playbook, run_ok
from e2e import ROOT_CA


def test_golive_check_passes_on_production(client):
    checks = TOPOLOGY.assert_golive_check_passes()
    # The repository host's pgBackRest items were judged, not skipped.
    for check in (
        "pgBackRest test restore scheduled",
        "pgBackRest backup newer than",
        "WAL archiving reaches the pgBackRest repository",
    ):
        assert f"PASS {API_HOSTS[1]} {check}" in checks, check


def test_golive_check_fails_and_names_the_host_when_a_monitoring_job_is_off(client):
    run_ok(API_HOSTS[1], "systemctl stop stet-health-check.timer")
    try:
        result = playbook("golive-check.yml", "-e", f"golive_ca_file={ROOT_CA}")
    finally:
        run_ok(API_HOSTS[1], "systemctl start stet-health-check.timer")
    assert result.returncode != 0
    assert f"FAIL  {API_HOSTS[1]}  health-check job active" in result.stdout
    assert f"PASS  {API_HOSTS[0]}  health-check job active" in result.stdout
