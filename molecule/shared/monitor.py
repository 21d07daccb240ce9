"""Prometheus and Alertmanager on a scenario's monitoring host (stet_monitor), asked on that
host, and what Alertmanager delivered to the webhook receiver and the SMTP sink the test
fixtures run there (molecule/shared/prepare.yml), each webhook notification checked for the
shared secret first."""

from __future__ import annotations

import hmac
import json
import shlex
import time
import urllib.parse
from collections.abc import Callable

RECEIVED = "/var/lib/webhook-receiver/received.jsonl"
MAILED = "/var/lib/smtp-sink/received.jsonl"
WEBHOOK_SECRET = "/etc/stet/secrets/alert_webhook_secret"
PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093


class Monitor:
    def __init__(self, name: str, run_ok: Callable[[str, str], str]):
        self.name = name
        self._run_ok = run_ok
        self._address: str | None = None
        self._secret: str | None = None

    def run(self, command: str) -> str:
        return self._run_ok(self.name, command)

    def url(self, port: int) -> str:
        """The services listen on the host's private address only."""
        if self._address is None:
            self._address = self.run("hostname -i").split()[0]
        return f"http://{self._address}:{port}"

    def notifications(self) -> list[dict]:
        """Every notification received so far: Alertmanager's JSON plus `received_at`; each must
        carry the shared secret as its bearer credential."""
        if self._secret is None:
            self._secret = self.run(f"cat {WEBHOOK_SECRET}").strip()
        secret = self._secret
        received = self.run(f"cat {RECEIVED} 2>/dev/null || true")
        entries = [json.loads(line) for line in received.splitlines()]
        for entry in entries:
            authorization = entry["headers"].get("Authorization", "")
            assert hmac.compare_digest(authorization, f"Bearer {secret}"), entry["headers"]
        return [{**json.loads(entry["body"]), "received_at": entry["received_at"]} for entry in entries]

    def wait_for(
        self, alertname: str, status: str, labels: dict[str, str], since: float, timeout: float
    ) -> float | None:
        """Seconds from `since` until a notification carried the alert (name and labels) with
        that status (firing or resolved); None if none came within `timeout` seconds."""
        wanted = {"alertname": alertname, **labels}
        deadline = time.time() + timeout
        while True:
            for notification in self.notifications():
                if notification["received_at"] < since:
                    continue
                for alert in notification["alerts"]:
                    if alert["status"] == status and all(
                        alert["labels"].get(k) == v for k, v in wanted.items()
                    ):
                        return notification["received_at"] - since
            if time.time() > deadline:
                return None
            time.sleep(1)

    def wait_for_mail(self, alertname: str, status: str, since: float, timeout: float) -> float | None:
        """Seconds from `since` until a mail told the alert's group with that status (firing or
        resolved: the subject starts [FIRING:n] or [RESOLVED], then the group's label values,
        alertname first); None if none came within `timeout` seconds."""
        prefix = "[FIRING:" if status == "firing" else "[RESOLVED]"
        deadline = time.time() + timeout
        while True:
            for line in self.run(f"cat {MAILED} 2>/dev/null || true").splitlines():
                mail = json.loads(line)
                subject = mail["headers"].get("Subject", "")
                if (
                    mail["received_at"] >= since
                    and subject.startswith(prefix)
                    and f"] {alertname} " in subject
                ):
                    return mail["received_at"] - since
            if time.time() > deadline:
                return None
            time.sleep(1)

    def firing_now(self, alertname: str, labels: dict[str, str]) -> bool:
        """Whether Alertmanager holds the alert as active right now."""
        answer = self.run(f"curl -sf --max-time 5 {self.url(ALERTMANAGER_PORT)}/api/v2/alerts")
        wanted = {"alertname": alertname, **labels}
        return any(all(a["labels"].get(k) == v for k, v in wanted.items()) for a in json.loads(answer))

    def query(self, expression: str) -> list[dict]:
        """The result vector of an instant query: [{"metric": {...}, "value": [t, "v"]}, ...]."""
        url = f"{self.url(PROMETHEUS_PORT)}/api/v1/query?query={urllib.parse.quote(expression)}"
        return json.loads(self.run(f"curl -sf --max-time 5 {shlex.quote(url)}"))["data"]["result"]

    def values(self, expression: str) -> list[str]:
        return [result["value"][1] for result in self.query(expression)]

    def by_host(self, expression: str) -> dict[str, str]:
        return {result["metric"]["host"]: result["value"][1] for result in self.query(expression)}

    def settle(self, expected: dict[str, dict[str, str]], timeout: float = 60) -> None:
        """Waits until each expression's value per host is as expected (new targets join at
        Prometheus' next scrapes); fails with what it saw last."""
        deadline = time.monotonic() + timeout
        while (seen := {expression: self.by_host(expression) for expression in expected}) != expected:
            assert time.monotonic() < deadline, seen
            time.sleep(2)
