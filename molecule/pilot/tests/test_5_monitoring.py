"""The monitoring role on the pilot: the health-check job alerts once through a signed
webhook and tells the recovery once, exporters answer on the private address only, the
jobs' logs rotate. Last of the pilot's tests: its stale heartbeats stay in the monitoring
tenant (the go-live check, which reads that tenant, has run before)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime

import pytest
import yaml
from conftest import API_HOST, DB_HOST, MONITORING_TENANT, REPO, SECRETS, host, local_request, run_ok

RECEIVED = "/var/lib/webhook-receiver/received.jsonl"
TOKEN = f"{SECRETS}/health-check.token"
SYSTEM = "probe-enforcer"
# stet_api_heartbeat_interval_seconds 5 (molecule/pilot/host_vars) x grace 2: stale after
# 10 s; the recovery checks below must finish within that window, even on a loaded machine.
STALE_AFTER_SECONDS = 10
ENVIRONMENT = yaml.safe_load((REPO / "inventories/pilot/group_vars/all.yml").read_text())["stet_env"]
API = "http://127.0.0.1:8000/v1/enforcement"


def heartbeat() -> None:
    body = {"system_id": SYSTEM, "enforced_correction_version": datetime.now(UTC).isoformat()}
    status, text = local_request("POST", f"{API}/heartbeat", TOKEN, MONITORING_TENANT, body)
    assert status == 201, text


def run_check() -> None:
    run_ok(API_HOST, "systemctl start stet-health-check.service")


def alerts() -> list[dict]:
    received = host(API_HOST).file(RECEIVED)
    text = received.content_string if received.exists else ""
    return [json.loads(line) for line in text.splitlines()]


def signed_payload(alert: dict) -> dict:
    """The alert's JSON, once its HMAC signature matches the secret the role was given."""
    secret = run_ok(API_HOST, f"cat {SECRETS}/alert_webhook_secret").strip().encode()
    expected = "sha256=" + hmac.new(secret, alert["body"].encode(), hashlib.sha256).hexdigest()
    assert hmac.compare_digest(alert["headers"]["X-Stet-Signature-256"], expected)
    return json.loads(alert["body"])


@pytest.fixture
def expected_system():
    """An enforcement system the monitoring tenant expects, removed afterwards."""
    assert local_request("PUT", f"{API}/systems/{SYSTEM}", TOKEN, MONITORING_TENANT)[0] in (200, 201)
    yield SYSTEM
    assert local_request("DELETE", f"{API}/systems/{SYSTEM}", TOKEN, MONITORING_TENANT)[0] == 204


def test_stale_heartbeat_alerts_once_and_recovery_is_told_once(expected_system):
    heartbeat()
    run_check()  # settles on OK (a recovery if an earlier run had alerted)
    before = len(alerts())

    time.sleep(STALE_AFTER_SECONDS + 2)
    run_check()
    run_check()  # same incident: no second alert
    new = alerts()[before:]
    assert len(new) == 1, new
    payload = signed_payload(new[0])
    assert payload["state"] == "WARN"
    assert f"{SYSTEM} STALE" in payload["text"]

    heartbeat()
    run_check()
    run_check()
    new = alerts()[before:]
    assert len(new) == 2, new
    payload = signed_payload(new[1])
    assert payload["state"] == "OK"
    assert payload["text"].startswith(f"[STET {ENVIRONMENT} {API_HOST}] RECOVERED from WARN")


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
