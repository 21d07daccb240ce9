"""Hosts of the app scenario and helpers shared by its tests."""

from __future__ import annotations

import json
import os
import shlex

import pytest
import testinfra

API = "stet-app-api"
DB = "stet-app-db"
PORTS = (8000, 8001)
SECRETS = "/etc/stet/secrets"
MONITORING_TENANT = "6f1c0a52-3b8e-4e57-9a55-1d2c3b4a5f60"
CLIENT_TENANT = "0b7e6a8e-2f7c-4a51-8d1e-7c5b9f0e4a21"


def _host(name: str):
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={os.environ['MOLECULE_INVENTORY_FILE']}")


@pytest.fixture(scope="session")
def api():
    return _host(API)


@pytest.fixture(scope="session")
def db():
    return _host(DB)


def run_ok(host, command: str) -> str:
    """Run a command, fail the test with its output unless it exits 0, return stdout."""
    result = host.run(command)
    assert result.rc == 0, f"{command!r} exited {result.rc}: {result.stdout}{result.stderr}"
    return result.stdout.strip()


def http(
    host,
    method: str,
    url: str,
    token_file: str | None = None,
    tenant: str | None = None,
    body: dict | None = None,
) -> tuple[int, str]:
    """curl on the host; the token is read there from its file, never copied here."""
    args = ["curl", "-s", "-o", "/dev/stdout", "-w", r"\n%{http_code}", "--max-time", "10", "-X", method]
    if tenant:
        args += ["-H", f"X-Tenant-Id: {tenant}"]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "--data", json.dumps(body)]
    command = shlex.join([*args, url])
    if token_file:
        command += f' -H "Authorization: Bearer $(cat {token_file})"'
    out = run_ok(host, command)
    text, _, status = out.rpartition("\n")
    return int(status), text


def private_address(host) -> str:
    return run_ok(host, "ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1")
