"""Helpers of the production scenario's tests: the topology's hosts, HTTPS requests through
the load balancer (molecule/shared/e2e.py), a load generator on the client host, and the
releases the API hosts run."""

from __future__ import annotations

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))
from e2e import Load, Topology

API_HOSTS = ["stet-prod-api1", "stet-prod-api2"]
# stet_version of inventories/production/group_vars/all.yml: what site.yml installs.
INITIAL_VERSION = "v1.2.1"
# Requests come from the ACME host: a client outside the load balancer and the API hosts.
TOPOLOGY = Topology(site="stet-prod-lb", client="stet-prod-acme", token_host=API_HOSTS[0])
CLIENT = TOPOLOGY.client
LB_URL = TOPOLOGY.url
host, run_ok, api, playbook = TOPOLOGY.host, TOPOLOGY.run_ok, TOPOLOGY.api, TOPOLOGY.playbook


@pytest.fixture(scope="session")
def client():
    return TOPOLOGY.prepare_client()


PRIMARY = "stet-prod-db1"


def load(rate: float = 20, write_rate: float = 1, max_seconds: int = 600) -> Load:
    """Reads and writes through the load balancer from the client host (molecule/shared/e2e.py)."""
    return Load(TOPOLOGY, rate=rate, write_rate=write_rate, max_seconds=max_seconds)


def release_of(name: str) -> dict:
    """The release a host's `current` link names and the STET_VERSION each instance runs with."""
    current = current_release(name)
    running = {}
    for port, pid in zip((8000, 8001), main_pids(name), strict=True):
        environ = run_ok(name, f"tr '\\0' '\\n' < /proc/{pid}/environ")
        running[port] = next(
            line.split("=", 1)[1] for line in environ.splitlines() if line.startswith("STET_VERSION=")
        )
    return {"current": current, "running": running}


def current_release(name: str) -> str:
    """The release a host's `current` link names (what its instances start from)."""
    return run_ok(name, "readlink /opt/stet/current").strip().rsplit("/", 1)[-1]


def on_release(version: str) -> dict:
    """release_of() for a host whose link and both instances are on one release."""
    return {"current": version, "running": {8000: version, 8001: version}}


def main_pids(name: str) -> list[str]:
    """Main PIDs of a host's instances: unchanged PIDs mean the instances were not restarted."""
    return [
        run_ok(name, f"systemctl show -p MainPID --value stet-api@{port}").strip() for port in (8000, 8001)
    ]
