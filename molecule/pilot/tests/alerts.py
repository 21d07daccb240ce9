"""What Alertmanager delivered to the pilot's webhook receiver (prepare.yml), each
notification checked for the shared secret first; and the expected-vs-delivered table
the alerting test fills and the session prints at its end (conftest)."""

from __future__ import annotations

import hmac
import json
import shlex
import time
import urllib.parse
from dataclasses import dataclass

from conftest import API_HOST, SECRETS, host, run_ok

RECEIVED = "/var/lib/webhook-receiver/received.jsonl"
SCRAPE_SECONDS = 5  # prometheus_scrape_interval in molecule/pilot/host_vars/stet-pilot-api.yml
FOR_SECONDS = 10  # every prometheus_alert_for there
GROUP_INTERVAL_SECONDS = 5  # alertmanager_group_interval there


@dataclass
class Delivery:
    failure: str
    alert: str
    budget: float
    fired_after: float | None = None
    resolved_after: float | None = None


DELIVERIES: list[Delivery] = []


def notifications() -> list[dict]:
    """Every notification received so far: Alertmanager's JSON plus `received_at`; each must
    carry the shared secret as its bearer credential."""
    secret = run_ok(API_HOST, f"cat {SECRETS}/alert_webhook_secret").strip()
    received = host(API_HOST).file(RECEIVED)
    entries = [json.loads(line) for line in (received.content_string if received.exists else "").splitlines()]
    for entry in entries:
        assert hmac.compare_digest(entry["headers"].get("Authorization", ""), f"Bearer {secret}"), entry[
            "headers"
        ]
    return [{**json.loads(entry["body"]), "received_at": entry["received_at"]} for entry in entries]


def wait_for(
    alertname: str, status: str, labels: dict[str, str], since: float, timeout: float
) -> float | None:
    """Seconds from `since` until a notification carried the alert (name and labels) with
    that status (firing or resolved); None if none came within `timeout` seconds."""
    deadline = time.time() + timeout
    while True:
        for notification in notifications():
            if notification["received_at"] < since:
                continue
            for alert in notification["alerts"]:
                wanted = {"alertname": alertname, **labels}
                if alert["status"] == status and all(alert["labels"].get(k) == v for k, v in wanted.items()):
                    return notification["received_at"] - since
        if time.time() > deadline:
            return None
        time.sleep(1)


def monitor_url(port: int) -> str:
    return f"http://{run_ok(API_HOST, 'hostname -i').split()[0]}:{port}"


def firing_now(alertname: str, labels: dict[str, str]) -> bool:
    """Whether Alertmanager holds the alert as active right now (its API, asked on the host)."""
    answer = run_ok(API_HOST, f"curl -sf --max-time 5 {monitor_url(9093)}/api/v2/alerts")
    wanted = {"alertname": alertname, **labels}
    return any(all(a["labels"].get(k) == v for k, v in wanted.items()) for a in json.loads(answer))


def prometheus_values(expression: str) -> list[str]:
    """The values of an instant query to Prometheus (asked on the host)."""
    query = shlex.quote(f"{monitor_url(9090)}/api/v1/query?query={urllib.parse.quote(expression)}")
    answer = json.loads(run_ok(API_HOST, f"curl -sf --max-time 5 {query}"))
    return [result["value"][1] for result in answer["data"]["result"]]
