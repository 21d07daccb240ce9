"""Prometheus metrics, correct with several worker processes.

With PROMETHEUS_MULTIPROC_DIR set (the systemd unit sets it to an empty directory
wiped at start), every worker writes its samples to files there and /metrics sums
them across workers. A dead worker's files stay, as its counts must: a counter never goes
back, and the one gauge reports the most recent sample of any worker, so no metric needs
the files of dead workers removed. Without it (tests, a single process) the app's own
registry is served.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.correction_requests = Counter(
            "stet_correction_requests_total",
            "Requests to POST /v1/corrections by HTTP status",
            ["status"],
            registry=self.registry,
        )
        self.fact_requests = Counter(
            "stet_fact_requests_total",
            "Requests to GET /v1/facts by HTTP status",
            ["status"],
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "stet_request_duration_seconds",
            "Time to answer a request, by endpoint and method",
            ["endpoint", "method"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.escalations = Counter(
            "stet_escalation_evaluations_total",
            "Escalation evaluations answered, by resulting level (NONE, WARN, CRITICAL)",
            ["level"],
            registry=self.registry,
        )

        # The latest evaluation of the tenant's whole fleet, whichever worker answered it
        # (mostrecent: with several workers the freshest sample wins, not a sum).
        self.escalation_level = Gauge(
            "stet_escalation_level",
            "Escalation level of the tenant at its latest unfiltered status or escalation read:"
            " 0 NONE, 1 WARN (a system STALE), 2 CRITICAL (a system MISSING)",
            ["tenant_id"],
            multiprocess_mode="mostrecent",
            registry=self.registry,
        )
        self.key_lookups = Counter(
            "stet_api_key_lookups_total",
            "API key lookups in the database by result (found, unknown), or skipped: an uncached"
            " key id past the per-process lookup budget, refused without asking the database",
            ["result"],
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
