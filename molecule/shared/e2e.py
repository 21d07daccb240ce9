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
# The monitoring tenant of both inventories' group_vars/all.yml: the health-check job and
# the go-live check watch its escalation, so the tests leave it alone.
MONITORING_TENANT = "6f1c0a52-3b8e-4e57-9a55-1d2c3b4a5f60"
# The tests' own tenant; its key is made on the token host with stet.ops.api_key.
TEST_TENANT = "0e2e7e57-0000-4000-8000-00000000e2e0"
TEST_TOKEN_FILE = "/root/stet-e2e.token"
# pebble's issuing root, fetched from its management API; verifies the site's certificate.
ROOT_CA = "/usr/local/share/stet-test/pebble-root.pem"
CLIENT_HEADERS = "/root/stet-client.headers"


class Topology:
    """A running scenario: `site` serves HTTPS, `client` (the ACME host, outside the
    topology) sends the requests, `token_host` (an API host) makes the tests' tenant key."""

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
        """The client host trusts pebble's root (so does the site) and holds the test tenant's headers."""
        # The management API's certificate names the ACME host; it listens on loopback.
        self.run_ok(
            self.client,
            f"mkdir -p {os.path.dirname(ROOT_CA)} && curl -sf --cacert /etc/pebble/ca.pem"
            f" --resolve {self.client}:15000:127.0.0.1 https://{self.client}:15000/roots/0 -o {ROOT_CA}",
        )
        self.pipe(self.client, f"cat {ROOT_CA}", self.site, ROOT_CA)
        key = self.ansible(
            self.token_host,
            "stet.ops.api_key",
            f"dsn_file=/etc/stet/secrets/database_url tenant_id={TEST_TENANT} name=e2e-tests"
            f" token_file={TEST_TOKEN_FILE}",
        )
        assert key.returncode == 0, key.stdout + key.stderr
        self.pipe(
            self.token_host,
            f'printf "Authorization: Bearer %s\\nX-Tenant-Id: {TEST_TENANT}\\n" "$(cat {TEST_TOKEN_FILE})"',
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
        result = self._ansible_command(["ansible-playbook", f"playbooks/{name}", *extra], timeout)
        print(result.stdout[-4000:])
        return result

    def ansible(self, pattern: str, module: str, args: str) -> subprocess.CompletedProcess:
        """One module on the scenario's hosts, as `ansible <pattern> -m <module> -a <args>`."""
        return self._ansible_command(["ansible", pattern, "--become", "-m", module, "-a", args], timeout=120)

    def _ansible_command(self, argv: list[str], timeout: int) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
        return subprocess.run(
            [*argv, "-i", str(pathlib.Path(self.inventory).parent)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
