"""Monitoring on the pilot: exporters answer on the private address only, Prometheus scrapes
every target that exists (each API instance included) and keeps its UI and Alertmanager's on
the private address, the health-check job is timed, the jobs' logs rotate. Delivery of the
alerts is proven by test_6_alerting."""

from __future__ import annotations

import json

import pytest
from alerts import MONITOR
from conftest import API_HOST, DB_HOST, host, run_ok


def test_timer_runs_the_job_every_five_minutes():
    assert run_ok(API_HOST, "systemctl is-enabled stet-health-check.timer").strip() == "enabled"
    calendar = run_ok(API_HOST, "systemctl show -p TimersCalendar --value stet-health-check.timer")
    assert calendar.startswith("{ OnCalendar=*-*-* *:00/5:00")


def private_address(name: str) -> str:
    return run_ok(name, "ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1").strip()


@pytest.mark.parametrize(
    ("target", "port", "metric"),
    [
        (API_HOST, 9100, "node_exporter_build_info"),
        (DB_HOST, 9100, "node_exporter_build_info"),
        (DB_HOST, 9187, "pg_up 1"),
        (DB_HOST, 9187, "stet_pg_replica_replay_lag_seconds"),
        (DB_HOST, 9187, "stet_pg_archiver_failing"),
        (API_HOST, 9113, "nginx_up 1"),
    ],
)
def test_exporters_answer_on_the_private_address_only(target, port, metric):
    address = private_address(target)
    # Scraped from the other host, across the pilot's network.
    scraper = DB_HOST if target == API_HOST else API_HOST
    assert metric in run_ok(scraper, f"curl -sf --max-time 10 http://{address}:{port}/metrics")
    listening = run_ok(target, f"ss -ltnH 'sport = :{port}'").split()
    assert f"{address}:{port}" in listening
    assert host(target).run(f"curl -s --max-time 5 http://127.0.0.1:{port}/metrics").rc == 7  # refused


def test_logrotate_rotates_the_jobs_logs():
    run_ok(API_HOST, "mkdir -p /var/log/stet && echo rotate me > /var/log/stet/rotation-probe.log")
    run_ok(API_HOST, "logrotate --force /etc/logrotate.d/stet")
    assert host(API_HOST).file("/var/log/stet/rotation-probe.log.1").content_string == "rotate me\n"
    assert host(API_HOST).file("/var/log/stet/rotation-probe.log").size == 0


EXPECTED_JOBS = {
    "node": 2,  # every pilot host; the ACME test host is no STET host
    "postgres": 1,
    "nginx": 1,
    "stet_api": 2,  # each instance on its own port
    "blackbox_https": 1,
    "prometheus": 1,
    "alertmanager": 1,
}


def test_prometheus_scrapes_every_target_that_exists():
    answer = json.loads(run_ok(API_HOST, f"curl -sf --max-time 10 {MONITOR.url(9090)}/api/v1/targets"))
    targets = answer["data"]["activeTargets"]
    jobs = {job: sum(t["labels"]["job"] == job for t in targets) for job in EXPECTED_JOBS}
    assert jobs == EXPECTED_JOBS
    down = {t["scrapeUrl"]: t["lastError"] for t in targets if t["health"] != "up"}
    assert down == {}
    # The API's own metrics arrive from both instances.
    assert len(MONITOR.values("stet_request_duration_seconds_count")) >= 2


def test_prometheus_reads_pgbouncers_pools_through_the_node_exporter():
    # Debian 12's PgBouncer exporter crashes (monitoring role README): a timer on the
    # database host writes the pools for the textfile collector instead.
    assert MONITOR.values(f'pgbouncer_up{{host="{DB_HOST}"}}') == ["1"]
    pools = MONITOR.values(f'pgbouncer_pools_server_active_connections{{host="{DB_HOST}",database="stet"}}')
    assert len(pools) == 1
    # Written afresh every 5 s (host_vars), not once at converge.
    [collected] = MONITOR.values(f'time() - pgbouncer_collected_timestamp_seconds{{host="{DB_HOST}"}}')
    assert float(collected) < 30
    assert run_ok(DB_HOST, "systemctl is-enabled stet-pgbouncer-metrics.timer").strip() == "enabled"


@pytest.mark.parametrize(
    ("port", "unit"),
    [(9090, "prometheus"), (9093, "prometheus-alertmanager"), (9115, "prometheus-blackbox-exporter")],
)
def test_the_monitoring_uis_listen_on_the_private_address_only(port, unit):
    address = run_ok(API_HOST, "hostname -i").split()[0]
    assert run_ok(API_HOST, f"ss -ltnH 'sport = :{port}'").split()[3] == f"{address}:{port}"
    assert run_ok(API_HOST, f"systemctl is-active {unit}").strip() == "active"
    # Alertmanager's cluster port stays closed.
    assert run_ok(API_HOST, "ss -ltnH 'sport = :9094'").strip() == ""


def test_prometheus_storage_is_bounded():
    flags = json.loads(run_ok(API_HOST, f"curl -sf {MONITOR.url(9090)}/api/v1/status/flags"))["data"]
    assert flags["storage.tsdb.retention.time"] == "30d"
    assert flags["storage.tsdb.retention.size"] in ("10GB", "10GiB")  # as Prometheus prints it
