"""The pilot's monitoring host (molecule/shared/monitor.py), the timings of its test
configuration, and the expected-vs-delivered table the alerting test fills and the
session prints at its end (conftest)."""

from __future__ import annotations

from dataclasses import dataclass

from conftest import API_HOST, run_ok
from monitor import Monitor

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
    mailed_after: float | None = None
    mailed_resolved_after: float | None = None


DELIVERIES: list[Delivery] = []


# Prometheus, Alertmanager and the webhook receiver on the pilot's monitoring host.
MONITOR = Monitor(API_HOST, run_ok)
