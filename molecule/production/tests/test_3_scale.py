"""scale.yml: a host added to stet_api in the inventory comes into service behind the load
balancer with the release the fleet runs (same manifest), while the running API hosts keep
serving, untouched; then site.yml over the grown fleet changes nothing and restarts nothing,
with the fleet on v1 over v2's schema (tests/test_2_operations.py)."""

from __future__ import annotations

import time

from conftest import (
    API_HOSTS,
    INITIAL_VERSION,
    MONITOR,
    NEW_HOST,
    NEXT_SCHEMA,
    REPO_SITE,
    address_of,
    applied_schema,
    assert_nothing_changed,
    assert_same_manifest,
    drained_hosts,
    load,
    main_pids,
    on_release,
    playbook,
    release_of,
    run_ok,
    step,
)

ALL_API_HOSTS = [*API_HOSTS, NEW_HOST]


def scale_inventory(tmp_path):
    """What an operator does: add the host under stet_api in the inventory."""
    added = tmp_path / "scale-inventory.yml"
    added.write_text(f"all:\n  children:\n    stet_api:\n      hosts:\n        {NEW_HOST}: {{}}\n")
    return str(added)


def test_scale_brings_a_new_api_host_into_service_without_touching_the_others(client, tmp_path):
    before = {name: main_pids(name) for name in API_HOSTS}
    # The fleet runs v1 again over v2's schema (tests/test_2_operations.py): scale.yml gives the
    # new host that release, built from its sources, byte for byte the artifact the others hold.
    with load() as traffic:
        result = playbook("scale.yml", "-i", scale_inventory(tmp_path), timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr

    assert {name: main_pids(name) for name in API_HOSTS} == before
    assert release_of(NEW_HOST) == on_release(INITIAL_VERSION)
    assert_same_manifest(INITIAL_VERSION, ALL_API_HOSTS)
    address = address_of(NEW_HOST)
    upstream = run_ok("stet-prod-lb", "nginx -T 2>/dev/null")
    assert f"server {address}:8000 max_fails" in upstream
    assert f"server {address}:8001 max_fails" in upstream
    assert drained_hosts() == []

    # The load balancer sends it requests: its instances log them.
    since = run_ok(NEW_HOST, "date +%s").strip()
    with load(max_seconds=5):
        time.sleep(5)
    log = run_ok(NEW_HOST, f"journalctl -u 'stet-api@*' --since @{since} -o cat")
    served = log.count('"path": "/v1/facts"')
    assert served > 0, log[-2000:]
    # Prometheus scrapes both of its instances over HTTPS (scale.yml's last play): one host
    # label per instance, so count them.
    MONITOR.settle({f'count by (host) (up{{job="stet_api", host="{NEW_HOST}"}} == 1)': {NEW_HOST: "2"}})
    step("scale.yml (adds api3)", traffic, min_reads=200, min_writes=10)


def test_site_yml_over_the_grown_fleet_changes_nothing_and_restarts_nothing(client, tmp_path):
    pids = {name: main_pids(name) for name in ALL_API_HOSTS}
    # The inventory's stet_version is the release the fleet runs: v1, rolled back to, over v2's
    # schema (tests/test_2_operations.py). Nothing to migrate, nothing to restart.
    with load() as traffic:
        result = playbook(REPO_SITE, "-i", scale_inventory(tmp_path), timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert_nothing_changed(result.stdout, ALL_API_HOSTS)
    assert {name: main_pids(name) for name in ALL_API_HOSTS} == pids
    assert_same_manifest(INITIAL_VERSION, ALL_API_HOSTS)
    assert applied_schema() == NEXT_SCHEMA
    step("site.yml over 3 API hosts", traffic, min_reads=200, min_writes=10)
