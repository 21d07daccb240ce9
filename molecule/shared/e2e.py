"""End-to-end helpers for the scenarios built by site.yml (pilot, production): commands on
the test hosts, HTTPS requests to the site from a client host that trusts pebble's root,
secrets copied between hosts without entering argv, and playbooks run against the
scenario's inventory. A scenario's conftest makes one Topology and exports its methods."""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import subprocess

import testinfra

REPO = pathlib.Path(__file__).resolve().parents[2]
# The monitoring tenant of both inventories' group_vars/all.yml and the key site.yml made for it.
MONITORING_TENANT = "6f1c0a52-3b8e-4e57-9a55-1d2c3b4a5f60"
TOKEN_FILE = "/etc/stet/secrets/health-check.token"
# pebble's issuing root, fetched from its management API; verifies the site's certificate.
ROOT_CA = "/usr/local/share/stet-test/pebble-root.pem"
CLIENT_HEADERS = "/root/stet-client.headers"


class Topology:
    """A running scenario: `site` serves HTTPS, `client` (the ACME host, outside the
    topology) sends the requests, `token_host` holds the monitoring tenant's key."""

    def __init__(self, site: str, client: str, token_host: str):
        self.site = site
        self.url = f"https://{site}"
        self.client = client
        self.token_host = token_host
        self.inventory = os.environ["MOLECULE_INVENTORY_FILE"]

    def host(self, name: str):
        return testinfra.get_host(f"ansible://{name}?ansible_inventory={self.inventory}")

    def run_ok(self, name: str, command: str) -> str:
        result = self.host(name).run(command)
        assert result.rc == 0, f"{name}: {command}: rc={result.rc} {result.stdout} {result.stderr}"
        return result.stdout

    @staticmethod
    def pipe(source: str, command: str, target: str, target_file: str) -> None:
        """Copies a command's output on one host into a 0600 file on another, never through argv."""
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

    def prepare_client(self):
        """The client host trusts pebble's root (so does the site) and holds the tenant's headers."""
        # The management API's certificate names the ACME host; it listens on loopback.
        self.run_ok(
            self.client,
            f"mkdir -p {os.path.dirname(ROOT_CA)} && curl -sf --cacert /etc/pebble/ca.pem"
            f" --resolve {self.client}:15000:127.0.0.1 https://{self.client}:15000/roots/0 -o {ROOT_CA}",
        )
        self.pipe(self.client, f"cat {ROOT_CA}", self.site, ROOT_CA)
        self.pipe(
            self.token_host,
            f'printf "Authorization: Bearer %s\\nX-Tenant-Id: {MONITORING_TENANT}\\n" "$(cat {TOKEN_FILE})"',
            self.client,
            CLIENT_HEADERS,
        )
        return self.host(self.client)

    def api(self, method: str, path: str, body: dict | None = None, headers: str = CLIENT_HEADERS):
        """One request to the site over HTTPS from the client; returns (status, JSON body or None)."""
        command = (
            f"curl -s -o /tmp/stet-body -w '%{{http_code}}' --cacert {ROOT_CA} -H @{headers}"
            f" -X {method} {shlex.quote(self.url + path)}"
        )
        if body is not None:
            command += f" -H 'Content-Type: application/json' --data {shlex.quote(json.dumps(body))}"
        status = int(self.run_ok(self.client, command))
        text = self.run_ok(self.client, "cat /tmp/stet-body")
        return status, (json.loads(text) if text.strip() else None)

    def playbook(self, name: str, *extra: str, timeout: int = 600) -> subprocess.CompletedProcess:
        """Runs playbooks/<name> against the scenario's inventory (the repository's ansible.cfg)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
        result = subprocess.run(
            ["ansible-playbook", f"playbooks/{name}", "-i", str(pathlib.Path(self.inventory).parent), *extra],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        print(result.stdout[-4000:])
        return result
