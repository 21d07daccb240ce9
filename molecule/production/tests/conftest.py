"""Helpers of the production scenario's tests: the topology's hosts, HTTPS requests through
the load balancer (molecule/shared/e2e.py), a load generator on the client host, and the
releases the API hosts run."""

from __future__ import annotations

import json
import pathlib
import shlex
import subprocess
import sys
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))
from e2e import CLIENT_HEADERS, REPO, ROOT_CA, Topology

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


class LoadGenerator:
    """scripts/loadgen on the client host, through the load balancer, until stopped."""

    STOP_FILE = "/tmp/loadgen.stop"
    SUMMARY = "/tmp/loadgen.json"

    def __init__(self, rate: int = 20, max_seconds: int = 600):
        self.rate = rate
        self.max_seconds = max_seconds

    def __enter__(self) -> LoadGenerator:
        subprocess.run(
            ["docker", "cp", str(REPO / "scripts/loadgen"), f"{CLIENT}:/usr/local/bin/loadgen"],
            check=True,
            timeout=30,
        )
        run_ok(CLIENT, f"rm -f {self.STOP_FILE} {self.SUMMARY}")
        urls = " ".join(
            f"--url {shlex.quote(LB_URL + path)}"
            for path in ("/health", "/v1/facts?subject_type=user&subject_id=load&requester_id=assistant")
        )
        run_ok(
            CLIENT,
            f"nohup python3 /usr/local/bin/loadgen {urls} --rate {self.rate} --duration {self.max_seconds}"
            f" --stop-file {self.STOP_FILE} --header-file {CLIENT_HEADERS} --cafile {ROOT_CA}"
            f" > {self.SUMMARY} 2>&1 &",
        )
        return self

    def __exit__(self, *exc) -> None:
        run_ok(CLIENT, f"touch {self.STOP_FILE}")

    def summary(self) -> dict:
        run_ok(CLIENT, f"touch {self.STOP_FILE}")
        for _ in range(60):
            text = run_ok(CLIENT, f"cat {self.SUMMARY}")
            if text.strip():
                summary = json.loads(text)
                print("loadgen:", json.dumps(summary))
                return summary
            time.sleep(1)
        raise AssertionError("loadgen printed no summary within 60 s")


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
