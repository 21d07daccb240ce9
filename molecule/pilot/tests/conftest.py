"""The pilot's end-to-end tests: requests over HTTPS from a client host (the ACME host,
outside the pilot) to the API host's nginx, and playbooks run against the pilot."""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import subprocess

import pytest
import testinfra

REPO = pathlib.Path(__file__).resolve().parents[3]
INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
SITE = "https://stet-pilot-api"
API_HOST = "stet-pilot-api"
DB_HOST = "stet-pilot-db"
CLIENT = "stet-pilot-acme"
# pebble's issuing root, fetched from its management API; verifies the site's certificate.
ROOT_CA = "/usr/local/share/stet-test/pebble-root.pem"
CLIENT_HEADERS = "/root/stet-client.headers"
# The monitoring tenant of inventories/pilot/group_vars/all.yml and the key site.yml made for it.
TENANT = "6f1c0a52-3b8e-4e57-9a55-1d2c3b4a5f60"
TOKEN_FILE = "/etc/stet/secrets/health-check.token"


def host(name: str):
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}")


def run_ok(name: str, command: str) -> str:
    result = host(name).run(command)
    assert result.rc == 0, f"{name}: {command}: rc={result.rc} {result.stdout} {result.stderr}"
    return result.stdout


def pipe(source: str, command: str, target: str, target_file: str) -> None:
    """Copies a command's output from one host into a 0600 file on another, never through argv."""
    reader = subprocess.Popen(["docker", "exec", source, "sh", "-c", command], stdout=subprocess.PIPE)
    subprocess.run(
        [
            "docker",
            "exec",
            "-i",
            target,
            "sh",
            "-c",
            f"umask 077 && mkdir -p {os.path.dirname(target_file)} && cat > {target_file}",
        ],
        stdin=reader.stdout,
        check=True,
        timeout=30,
    )
    assert reader.wait(timeout=30) == 0


@pytest.fixture(scope="session")
def client():
    """The client host, trusting pebble's root and holding the monitoring tenant's headers."""
    run_ok(
        CLIENT,
        f"mkdir -p {os.path.dirname(ROOT_CA)} && curl -sf --cacert /etc/pebble/ca.pem"
        f" --resolve {CLIENT}:15000:127.0.0.1 https://{CLIENT}:15000/roots/0 -o {ROOT_CA}",
    )
    pipe(CLIENT, f"cat {ROOT_CA}", API_HOST, ROOT_CA)
    pipe(
        API_HOST,
        f'printf "Authorization: Bearer %s\\nX-Tenant-Id: {TENANT}\\n" "$(cat {TOKEN_FILE})"',
        CLIENT,
        CLIENT_HEADERS,
    )
    return host(CLIENT)


def api(method: str, path: str, body: dict | None = None, headers: str = CLIENT_HEADERS):
    """One request to the site over HTTPS from the client; returns (status, JSON body or None)."""
    command = (
        f"curl -s -o /tmp/stet-body -w '%{{http_code}}' --cacert {ROOT_CA} -H @{headers}"
        f" -X {method} {shlex.quote(SITE + path)}"
    )
    if body is not None:
        command += f" -H 'Content-Type: application/json' --data {shlex.quote(json.dumps(body))}"
    status = int(run_ok(CLIENT, command))
    text = run_ok(CLIENT, "cat /tmp/stet-body")
    return status, (json.loads(text) if text.strip() else None)


def playbook(name: str, *extra: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Runs playbooks/<name> against the pilot (the repository's ansible.cfg, Molecule's inventory)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    result = subprocess.run(
        ["ansible-playbook", f"playbooks/{name}", "-i", str(pathlib.Path(INVENTORY).parent), *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    print(result.stdout[-4000:])
    return result
