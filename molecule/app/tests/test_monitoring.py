"""The monitoring role: alerting health-check job, exporters on the private address, logs."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime

import pytest
from conftest import API, DB, MONITORING_TENANT, SECRETS, http, private_address, run_ok

testinfra_hosts = [API]

RECEIVED = "/var/lib/webhook-receiver/received.jsonl"
TOKEN = f"{SECRETS}/monitoring.token"
# STET_HEARTBEAT_INTERVAL_SECONDS=5 x grace 2 in the scenario: stale after 10 s; the recovery
# checks below must finish within that window, even on a loaded machine.
STALE_AFTER_SECONDS = 10


def heartbeat(host) -> None:
    body = {"system_id": "probe-enforcer", "enforced_correction_version": datetime.now(UTC).isoformat()}
    status, text = http(
        host, "POST", "http://127.0.0.1:8000/v1/enforcement/heartbeat", TOKEN, MONITORING_TENANT, body
    )
    assert status == 201, text


def run_check(host) -> None:
    run_ok(host, "systemctl start stet-health-check.service")


def alerts(host) -> list[dict]:
    text = host.file(RECEIVED).content_string if host.file(RECEIVED).exists else ""
    return [json.loads(line) for line in text.splitlines()]


def assert_signed(host, alert: dict) -> dict:
    secret = run_ok(host, f"cat {SECRETS}/alert_webhook_secret").encode()
    expected = "sha256=" + hmac.new(secret, alert["body"].encode(), hashlib.sha256).hexdigest()
    assert hmac.compare_digest(alert["headers"]["X-Stet-Signature-256"], expected)
    return json.loads(alert["body"])


def test_stale_heartbeat_alerts_once_and_recovery_is_told_once(host):
    heartbeat(host)
    run_check(host)  # settles on OK (a recovery if an earlier run had alerted)
    before = len(alerts(host))

    time.sleep(STALE_AFTER_SECONDS + 2)
    run_check(host)
    run_check(host)  # same incident: no second alert
    new = alerts(host)[before:]
    assert len(new) == 1, new
    payload = assert_signed(host, new[0])
    assert payload["state"] == "WARN"
    assert "probe-enforcer STALE" in payload["text"]

    heartbeat(host)
    run_check(host)
    run_check(host)
    new = alerts(host)[before:]
    assert len(new) == 2, new
    payload = assert_signed(host, new[1])
    assert payload["state"] == "OK"
    assert payload["text"].startswith("[STET test stet-app-api] RECOVERED from WARN")


def test_a_forged_signature_would_not_match(host):
    forged = {"headers": {"X-Stet-Signature-256": "sha256=" + "0" * 64}, "body": '{"text": "x"}'}
    with pytest.raises(AssertionError):
        assert_signed(host, forged)


def test_timer_runs_the_job_every_five_minutes(host):
    assert run_ok(host, "systemctl is-enabled stet-health-check.timer") == "enabled"
    assert run_ok(host, "systemctl show -p TimersCalendar --value stet-health-check.timer").startswith(
        "{ OnCalendar=*-*-* *:00/5:00"
    )


@pytest.mark.parametrize(
    ("name", "port", "metric"),
    [(API, 9100, "node_exporter_build_info"), (DB, 9100, "node_exporter_build_info"), (DB, 9187, "pg_up 1")],
)
def test_exporters_answer_on_the_private_address_only(host, api, db, name, port, metric):
    target = api if name == API else db
    address = private_address(target)
    # Scraped from the other host, across the scenario's network.
    scraper = db if name == API else api
    assert metric in run_ok(scraper, f"curl -sf --max-time 10 http://{address}:{port}/metrics")
    listening = run_ok(target, f"ss -ltnH 'sport = :{port}'").split()
    assert f"{address}:{port}" in listening
    assert target.run(f"curl -s --max-time 5 http://127.0.0.1:{port}/metrics").rc == 7  # refused


def test_logrotate_rotates_the_jobs_logs(host):
    run_ok(host, "mkdir -p /var/log/stet && echo backup done > /var/log/stet/backup.log")
    run_ok(host, "logrotate --force /etc/logrotate.d/stet")
    assert host.file("/var/log/stet/backup.log.1").content_string == "backup done\n"
    assert host.file("/var/log/stet/backup.log").size == 0
