"""Helpers of the production scenario's tests: hosts, HTTPS requests through the load
balancer from a client host, secrets copied between hosts without entering argv, and the
operational playbooks run against the scenario's inventory."""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import subprocess
import time

import pytest
import testinfra

REPO = pathlib.Path(__file__).resolve().parents[3]
INVENTORY_DIR = pathlib.Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
LB_URL = "https://stet-prod-lb"
# Requests come from the ACME host: a client outside the load balancer and the API hosts.
CLIENT = "stet-prod-acme"
CLIENT_CA = "/root/pebble-root.pem"
CLIENT_HEADERS = "/root/stet-client.headers"
API_HOSTS = ["stet-prod-api1", "stet-prod-api2"]
# The monitoring tenant of inventories/production/group_vars/all.yml and its key on api1.
TENANT = "6f1c0a52-3b8e-4e57-9a55-1d2c3b4a5f60"
TOKEN_FILE = "/etc/stet/secrets/health-check.token"


def host(name: str):
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={os.environ['MOLECULE_INVENTORY_FILE']}")


def run_ok(name: str, command: str) -> str:
    result = host(name).run(command)
    assert result.rc == 0, f"{name}: {command}: rc={result.rc} {result.stderr}"
    return result.stdout


@pytest.fixture(scope="session")
def client():
    """The client host, trusting pebble's issuing root and holding the tenant's headers."""
    run_ok(CLIENT, f"curl -sf --cacert /etc/pebble/ca.pem https://{CLIENT}:15000/roots/0 -o {CLIENT_CA}")
    # The token goes from api1's secret file to a 0600 file on the client through a pipe.
    reader = subprocess.Popen(
        [
            "docker",
            "exec",
            API_HOSTS[0],
            "sh",
            "-c",
            f'printf "Authorization: Bearer %s\\nX-Tenant-Id: {TENANT}\\n" "$(cat {TOKEN_FILE})"',
        ],
        stdout=subprocess.PIPE,
    )
    subprocess.run(
        ["docker", "exec", "-i", CLIENT, "sh", "-c", f"umask 077 && cat > {CLIENT_HEADERS}"],
        stdin=reader.stdout,
        check=True,
        timeout=30,
    )
    assert reader.wait(timeout=30) == 0
    return host(CLIENT)


def api(method: str, path: str, body: dict | None = None) -> tuple[int, dict | None]:
    """One request through the load balancer over HTTPS; returns (status, JSON body)."""
    command = (
        f"curl -s -o /tmp/stet-body -w '%{{http_code}}' --cacert {CLIENT_CA} -H @{CLIENT_HEADERS}"
        f" -X {method} {shlex.quote(LB_URL + path)}"
    )
    if body is not None:
        command += f" -H 'Content-Type: application/json' --data {shlex.quote(json.dumps(body))}"
    status = int(run_ok(CLIENT, command))
    text = run_ok(CLIENT, "cat /tmp/stet-body")
    return status, (json.loads(text) if text.strip() else None)


def playbook(name: str, *extra: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Runs playbooks/<name> against the scenario's inventory (its host_vars included)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    result = subprocess.run(
        ["ansible-playbook", f"playbooks/{name}", "-i", str(INVENTORY_DIR), *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    print(result.stdout[-3000:])
    return result


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
            f" --stop-file {self.STOP_FILE} --header-file {CLIENT_HEADERS} --cafile {CLIENT_CA}"
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
    current = run_ok(name, "readlink /opt/stet/current").strip().rsplit("/", 1)[-1]
    running = {}
    for port, pid in zip((8000, 8001), main_pids(name), strict=True):
        environ = run_ok(name, f"tr '\\0' '\\n' < /proc/{pid}/environ")
        running[port] = next(
            line.split("=", 1)[1] for line in environ.splitlines() if line.startswith("STET_VERSION=")
        )
    return {"current": current, "running": running}


def main_pids(name: str) -> list[str]:
    """Main PIDs of a host's instances: unchanged PIDs mean the instances were not restarted."""
    return [
        run_ok(name, f"systemctl show -p MainPID --value stet-api@{port}").strip() for port in (8000, 8001)
    ]
