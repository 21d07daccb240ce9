"""The operational playbooks against the running topology: a rolling deploy under
continuous load, a deploy whose health gate fails, rollback, backup and test restore."""

from __future__ import annotations

from conftest import (
    API_HOSTS,
    INITIAL_VERSION,
    PRIMARY,
    api,
    current_release,
    load,
    main_pids,
    on_release,
    playbook,
    release_of,
    run_ok,
)

NEXT = "v1.2.2-test"
BROKEN = "v1.2.3-broken"


def drained_servers() -> str:
    return run_ok("stet-prod-lb", "grep -c ' down ' /etc/nginx/sites-available/stet || true").strip()


def assert_every_host_runs(version: str) -> None:
    for name in API_HOSTS:
        assert release_of(name) == on_release(version), name


def test_rolling_deploy_under_load_loses_no_request(client):
    assert_every_host_runs(INITIAL_VERSION)
    with load() as traffic:
        result = playbook("deploy.yml", "-e", f"stet_version={NEXT}")
    assert result.returncode == 0, result.stderr
    # At least 10 s of reads and writes overlapped the roll.
    traffic.assert_nothing_failed_or_lost(PRIMARY, min_reads=200, min_writes=10)
    assert_every_host_runs(NEXT)
    assert drained_servers() == "0"


def test_rollback_returns_every_host_to_the_previous_release(client):
    with load() as traffic:
        result = playbook("rollback.yml")
    assert result.returncode == 0, result.stderr
    traffic.assert_nothing_failed_or_lost(PRIMARY, min_reads=100, min_writes=5)
    assert_every_host_runs(INITIAL_VERSION)


def test_a_failed_health_gate_stops_the_roll_after_the_first_host(client):
    untouched = main_pids(API_HOSTS[1])
    # A release whose configuration the API refuses (pool minimum above its maximum):
    # the instances never answer /ready.
    with load() as traffic:
        result = playbook(
            "deploy.yml",
            "-e",
            f"stet_version={BROKEN}",
            "-e",
            "stet_api_db_pool_min=10",
            "-e",
            "stet_api_ready_retries=5",
            "-e",
            "stet_api_ready_delay=1",
        )
    assert result.returncode != 0
    traffic.assert_nothing_failed_or_lost(PRIMARY, min_reads=100, min_writes=5)
    # The first host holds the broken release; its instances fail to start.
    assert current_release(API_HOSTS[0]) == BROKEN
    # The second host was never reached: same release, same processes.
    assert release_of(API_HOSTS[1]) == on_release(INITIAL_VERSION)
    assert main_pids(API_HOSTS[1]) == untouched
    # The broken host stays out of the load balancer (both of its instances).
    assert drained_servers() == "2"
    assert api("GET", "/health")[0] == 200


def test_rollback_after_a_failed_deploy_touches_only_the_failed_host(client):
    untouched = main_pids(API_HOSTS[1])
    result = playbook("rollback.yml")
    assert result.returncode == 0, result.stderr
    assert_every_host_runs(INITIAL_VERSION)
    assert main_pids(API_HOSTS[1]) == untouched
    assert drained_servers() == "0"


def test_backup_then_test_restore_prove_the_dump(client):
    assert playbook("backup.yml").returncode == 0
    result = playbook("test-restore.yml")
    assert result.returncode == 0, result.stderr
    assert "job=test_restore status=ok" in result.stdout


def test_restore_refuses_without_a_dump(client):
    pids = main_pids(API_HOSTS[0])
    result = playbook("restore.yml")
    assert result.returncode != 0
    assert "Name the dump to restore" in result.stdout
    assert main_pids(API_HOSTS[0]) == pids
