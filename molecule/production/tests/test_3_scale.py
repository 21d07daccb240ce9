"""scale.yml: a host added to stet_api in the inventory comes into service behind the load
balancer while the running API hosts keep serving, untouched."""

from __future__ import annotations

import time

from conftest import (
    API_HOSTS,
    INITIAL_VERSION,
    PRIMARY,
    load,
    main_pids,
    on_release,
    playbook,
    release_of,
    run_ok,
)

NEW_HOST = "stet-prod-api3"


def test_scale_brings_a_new_api_host_into_service_without_touching_the_others(client, tmp_path):
    before = {name: main_pids(name) for name in API_HOSTS}
    # What an operator does: add the host under stet_api in the inventory, run scale.yml.
    added = tmp_path / "scale-inventory.yml"
    added.write_text(f"all:\n  children:\n    stet_api:\n      hosts:\n        {NEW_HOST}: {{}}\n")
    with load() as traffic:
        result = playbook("scale.yml", "-i", str(added), timeout=1200)
    assert result.returncode == 0, result.stderr
    traffic.assert_nothing_failed_or_lost(PRIMARY, min_reads=200, min_writes=10)

    assert {name: main_pids(name) for name in API_HOSTS} == before
    assert release_of(NEW_HOST) == on_release(INITIAL_VERSION)
    address = run_ok(NEW_HOST, "hostname -i").split()[0]
    upstream = run_ok("stet-prod-lb", "nginx -T 2>/dev/null")
    assert f"server {address}:8000 max_fails" in upstream
    assert f"server {address}:8001 max_fails" in upstream

    # The load balancer sends it requests: its instances log them.
    since = run_ok(NEW_HOST, "date +%s").strip()
    with load(max_seconds=5):
        time.sleep(5)
    log = run_ok(NEW_HOST, f"journalctl -u 'stet-api@*' --since @{since} -o cat")
    served = log.count('"path": "/v1/facts"')
    assert served > 0, log[-2000:]
