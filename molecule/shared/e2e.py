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
import time
import uuid

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
LOADGEN = REPO / "scripts" / "loadgen"
# What the load reads: liveness (no database) and a permission-filtered facts query.
READ_PATHS = ("/health", "/v1/facts?subject_type=user&subject_id=load&requester_id=assistant")


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
        # The test hosts are containers of the same names: a command is one `docker exec`
        # (testinfra's ansible backend runs a whole ansible process per command).
        return testinfra.get_host(f"docker://{name}")

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

    def playbook(
        self, name: str | pathlib.Path, *extra: str, timeout: int = 600
    ) -> subprocess.CompletedProcess:
        """Runs playbooks/<name> (or a playbook at a path) against the scenario's inventory
        with the repository's ansible.cfg."""
        path = name if isinstance(name, pathlib.Path) else f"playbooks/{name}"
        result = self._ansible_command(["ansible-playbook", str(path), *extra], timeout)
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


class Load:
    """The load generator on the client host, reading and writing through the site until
    stopped. Every write is a correction with an idempotency key of its own; after the
    load, `corrections_check` compares what the service acknowledged with what the
    database holds, so a test proves that no acknowledged write was lost, not only that
    requests answered."""

    def __init__(self, topology: Topology, rate: float = 20, write_rate: float = 1, max_seconds: int = 600):
        self.topology = topology
        self.tag = f"load-{uuid.uuid4().hex[:8]}"
        self.dir = f"/root/{self.tag}"
        self.rate = rate
        self.write_rate = write_rate
        self.max_seconds = max_seconds
        self.summary: dict | None = None

    def __enter__(self) -> Load:
        client = self.topology.client
        body = {
            "subject": {"type": "user", "id": f"{self.tag}-{{seq}}"},
            "field_key": "load",
            "value": {"load": self.tag, "seq": "{seq}"},
            "class": "FACT",
            "permissions": {"readers": ["assistant"]},
            "actor": {"type": "system", "id": "stet-tests"},
            "idempotency_key": f"{self.tag}-{{seq}}",
        }
        self.topology.run_ok(client, f"mkdir -p -m 0700 {self.dir}")
        subprocess.run(["docker", "cp", str(LOADGEN), f"{client}:{self.dir}/loadgen"], check=True, timeout=30)
        subprocess.run(
            ["docker", "exec", "-i", client, "sh", "-c", f"cat > {self.dir}/body.json"],
            input=json.dumps(body).encode(),
            check=True,
            timeout=30,
        )
        reads = " ".join(f"--url {shlex.quote(self.topology.url + path)}" for path in READ_PATHS)
        command = (
            f"python3 {self.dir}/loadgen {reads} --rate {self.rate} --duration {self.max_seconds}"
            f" --write-url {self.topology.url}/v1/corrections --write-body {self.dir}/body.json"
            f" --write-rate {self.write_rate} --ack-file {self.dir}/acked.jsonl --stop-file {self.dir}/stop"
            f" --header-file {CLIENT_HEADERS} --cafile {ROOT_CA} > {self.dir}/summary.json 2>&1"
        )
        subprocess.run(["docker", "exec", "-d", client, "sh", "-c", command], check=True, timeout=30)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> dict:
        """Stops the load (in-flight requests finish within their timeout); its summary."""
        if self.summary is None:
            client = self.topology.client
            self.topology.run_ok(client, f"touch {self.dir}/stop")
            for _ in range(60):
                text = self.topology.run_ok(client, f"cat {self.dir}/summary.json").strip()
                if text:
                    self.summary = json.loads(text.splitlines()[-1])
                    print("load:", json.dumps(self.summary, sort_keys=True))
                    return self.summary
                time.sleep(1)
            raise AssertionError("the load generator wrote no summary within 60 s")
        return self.summary

    def corrections_check(self, database_host: str) -> dict:
        """The load's acknowledged corrections against the rows the database on `database_host` holds."""
        acked_lines = self.topology.run_ok(
            self.topology.client, f"cat {self.dir}/acked.jsonl 2>/dev/null || true"
        )
        acked = {}
        for line in acked_lines.splitlines():
            if line.strip():
                entry = json.loads(line)
                acked[f"{self.tag}-{entry['seq']}"] = entry["correction_id"]
        # The tag is made here of letters, digits and a dash: safe inside the literal.
        query = (
            "SELECT idempotency_key, correction_id FROM corrections"  # noqa: S608
            f" WHERE idempotency_key LIKE '{self.tag}-%'"
        )
        rows = self.topology.run_ok(
            database_host, f"runuser -u postgres -- psql -X -d stet -tAF ' ' -c {shlex.quote(query)}"
        )
        stored = dict(line.split(" ", 1) for line in rows.splitlines() if line.strip())
        check = {
            "acknowledged": len(acked),
            "stored": len(stored),
            "lost": sorted(key for key, correction_id in acked.items() if stored.get(key) != correction_id),
            # Committed while the client saw an error (a connection dropped after the commit).
            "unacknowledged_commits": sorted(set(stored) - set(acked)),
        }
        print("writes:", json.dumps(check))
        return check

    def assert_nothing_failed_or_lost(self, database_host: str, min_reads: int, min_writes: int) -> None:
        """No read or write failed, the load overlapped the operation, and every acknowledged
        write is in the database."""
        summary = self.stop()
        assert summary["failed"] == 0, summary
        assert summary["writes"]["failed"] == 0, summary
        assert summary["sent"] >= min_reads, summary
        check = self.corrections_check(database_host)
        assert check["acknowledged"] >= min_writes, check
        assert check["lost"] == [], check
        assert check["stored"] == check["acknowledged"], check
