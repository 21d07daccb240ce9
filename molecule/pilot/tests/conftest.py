"""The pilot's hosts and helpers: requests over HTTPS from a client host (the ACME host,
outside the pilot) to the API host's nginx, commands on the hosts, load with reads and
writes, and playbooks run against the pilot (molecule/shared/e2e.py)."""

from __future__ import annotations

import json
import pathlib
import shlex
import sys

import pytest
import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))
from e2e import MONITORING_TENANT, REPO, ROOT_CA, Load, Topology

API_HOST = "stet-pilot-api"
DB_HOST = "stet-pilot-db"
PORTS = (8000, 8001)
SECRETS = "/etc/stet/secrets"
# The release site.yml installs: stet_version of the pilot inventory.
RELEASE = yaml.safe_load((REPO / "inventories/pilot/group_vars/all.yml").read_text())["stet_version"]
SCENARIO = pathlib.Path(__file__).resolve().parents[1]
TOPOLOGY = Topology(site=API_HOST, client="stet-pilot-acme", token_host=API_HOST)
CLIENT = TOPOLOGY.client
SITE = TOPOLOGY.url
host, run_ok, api, playbook = TOPOLOGY.host, TOPOLOGY.run_ok, TOPOLOGY.api, TOPOLOGY.playbook
__all__ = [
    "API_HOST",
    "CLIENT",
    "DB_HOST",
    "MONITORING_TENANT",
    "PORTS",
    "RELEASE",
    "ROOT_CA",
    "SCENARIO",
    "SECRETS",
    "SITE",
    "api",
    "host",
    "local_request",
    "main_pid",
    "playbook",
    "run_ok",
]


@pytest.fixture(scope="session")
def client():
    return TOPOLOGY.prepare_client()


def load(rate: float = 10, write_rate: float = 1, max_seconds: int = 600, request_log: bool = False) -> Load:
    """Reads and writes through nginx from the client host (with `request_log`, every
    request's timing and status too). 10 reads/s resolve an outage to 0.1 s; each read is a
    new TLS connection, and 20/s cost CI a fifth of a core for as long as a test ran."""
    return Load(TOPOLOGY, rate=rate, write_rate=write_rate, max_seconds=max_seconds, request_log=request_log)


def main_pid(port: int) -> int:
    return int(run_ok(API_HOST, f"systemctl show -p MainPID --value stet-api@{port}"))


def local_request(
    method: str,
    url: str,
    token_file: str | None = None,
    tenant: str | None = None,
    body: dict | None = None,
) -> tuple[int, str]:
    """curl on the API host itself; the token is read there from its file, never copied here."""
    args = ["curl", "-s", "-o", "/dev/stdout", "-w", r"\n%{http_code}", "--max-time", "10", "-X", method]
    if tenant:
        args += ["-H", f"X-Tenant-Id: {tenant}"]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "--data", json.dumps(body)]
    command = shlex.join([*args, url])
    if token_file:
        command += f' -H "Authorization: Bearer $(cat {token_file})"'
    text, _, status = run_ok(API_HOST, command).rpartition("\n")
    return int(status), text


def pytest_terminal_summary(terminalreporter):
    """The alerting test's expected-vs-delivered table (tests/alerts.py), when it ran."""
    alerts = sys.modules.get("alerts")
    if not alerts or not alerts.DELIVERIES:
        return
    write = terminalreporter.write_line
    terminalreporter.section("alerts: expected vs delivered (seconds after the failure / the repair)")
    write(
        f"{'failure':34} {'expected alert':70} {'budget':>6} {'fired':>6} {'resolved':>8}"
        f" {'mailed':>6} {'mailed resolved':>15}"
    )

    def seconds(value: float | None) -> str:
        return f"{value:.1f}" if value is not None else "NEVER"

    for d in alerts.DELIVERIES:
        write(
            f"{d.failure:34} {d.alert:70} {d.budget:>6.0f} {seconds(d.fired_after):>6}"
            f" {seconds(d.resolved_after):>8} {seconds(d.mailed_after):>6}"
            f" {seconds(d.mailed_resolved_after):>15}"
        )
