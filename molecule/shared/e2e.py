"""End-to-end helpers for the scenarios built by site.yml (pilot, production): commands on
the test hosts, HTTPS requests to the site from a client host that trusts pebble's root,
secrets copied between hosts without entering argv, and playbooks run against the
scenario's inventory. A scenario's conftest makes one Topology and exports its methods."""

from __future__ import annotations

import datetime
import hashlib
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
# Patroni, etcd and HAProxy of the production topology, asked on their hosts (as root).
PATRONICTL = "patronictl --config-file /etc/patroni/15-main.yml"
ETCDCTL = (
    "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/ssl/stet-pki/ca.crt"
    " --cert=/etc/ssl/stet-pki/etcd.crt --key=/etc/ssl/stet-pki/etcd.key"
)
# HAProxy's view of the database hosts, through its admin socket (no socat on the hosts).
HAPROXY_STATE = (
    "python3 -c \"import socket; s = socket.socket(socket.AF_UNIX); s.connect('/run/haproxy/admin.sock');"
    " s.sendall(b'show stat\\n'); print(s.makefile().read())\""
)
# The load generator, a standalone program copied into the client host and run there.
LOADGEN = REPO / "molecule" / "shared" / "loadgen.py"
LOADGEN_MAX_SECONDS = 1800  # loadgen's MAX_DURATION_SECONDS
# What the load reads: liveness (no database) and a permission-filtered facts query.
READ_PATHS = ("/health", "/v1/facts?subject_type=user&subject_id=load&requester_id=assistant")
# Statuses loadgen counts as answered: reads 200, writes 201 (200 on a replay), 429 counted apart.
ANSWERED = ("200", "201", "429")


def is_failure(status: str) -> bool:
    """A request of the load's log that failed (a 429 is a refusal, not a failure)."""
    return status not in ANSWERED


def back_after(requests: list[dict], fault_at: float) -> tuple[float | None, int]:
    """Of a load's request log: seconds from `fault_at` (epoch) until requests succeed again for
    good (0.0 when none failed), and how many requests finishing after it failed; None: they
    still failed when the log ends."""
    after = sorted((r for r in requests if r["finished"] >= fault_at), key=lambda r: r["started"])
    failed = [r for r in after if is_failure(r["status"])]
    if not failed:
        return 0.0, 0
    last_failure = failed[-1]["started"]
    later = [r for r in after if r["started"] > last_failure and not is_failure(r["status"])]
    if not later:
        return None, len(failed)
    return round(later[0]["started"] - fault_at, 1), len(failed)


def md5_of(ids) -> str:
    """A checksum over sorted ids: the acknowledged and stored sets compared in one figure."""
    return hashlib.md5("\n".join(sorted(ids)).encode()).hexdigest()  # noqa: S324 - not a secret


class Topology:
    """A running scenario: `site` serves HTTPS, `client` (the ACME host, outside the
    topology) sends the requests, `token_host` (an API host) makes the tests' tenant key."""

    def __init__(self, site: str, client: str, token_host: str, inventory: str | None = None):
        self.site = site
        self.url = f"https://{site}"
        self.client = client
        self.token_host = token_host
        # The inventory Molecule wrote (its ansible_inventory.yml): Molecule's own while it
        # runs the verifier, or given by a caller that runs outside Molecule (the drills).
        self.inventory = os.environ["MOLECULE_INVENTORY_FILE"] if inventory is None else inventory

    def host(self, name: str):
        # The test hosts are containers of the same names: a command is one `docker exec`
        # (testinfra's ansible backend runs a whole ansible process per command).
        return testinfra.get_host(f"docker://{name}")

    def run_ok(self, name: str, command: str) -> str:
        result = self.host(name).run(command)
        assert result.rc == 0, f"{name}: {command}: rc={result.rc} {result.stdout} {result.stderr}"
        return result.stdout

    @staticmethod
    def sh(name: str, command: str, timeout: float = 60, check: bool = True) -> str:
        """A shell command on a test host, bounded by `timeout` seconds (TimeoutExpired past
        it); its stdout. With check, a non-zero exit raises RuntimeError."""
        result = subprocess.run(
            ["docker", "exec", name, "sh", "-c", command], capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{name}: {command}: rc={result.returncode} {result.stdout} {result.stderr}")
        return result.stdout

    @staticmethod
    def psql(name: str, query: str, timeout: float = 30) -> str:
        """A query on the stet database of a database host, as postgres; unaligned rows,
        fields separated by one space."""
        command = f"runuser -u postgres -- psql -X -d stet -tAF ' ' -c {shlex.quote(query)}"
        return Topology.sh(name, command, timeout).strip()

    @staticmethod
    def succeeds(name: str, command: str, timeout: float = 15) -> bool:
        """Whether a shell command on a test host exits 0 within `timeout` seconds."""
        try:
            result = subprocess.run(
                ["docker", "exec", name, "sh", "-c", command], capture_output=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return False
        return result.returncode == 0

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

    def assert_golive_check_passes(self) -> str:
        """playbooks/golive-check.yml, with pebble's root for the site's certificate, passes
        every check on every host. Returns its output with the blanks folded (the callback
        wraps long lines)."""
        result = self.playbook("golive-check.yml", "-e", f"golive_ca_file={ROOT_CA}")
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        assert "FAIL " not in result.stdout
        assert "0 failed" in result.stdout
        return " ".join(result.stdout.split())

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
    requests answered.

    `tag` names the load (its directory on the client and the prefix of its idempotency
    keys; letters, digits and dashes; default a random one). With `request_log`, loadgen
    also logs every request (kind, start, end, status) to requests.jsonl, from which
    `service_back_after` reads how long an outage lasted."""

    def __init__(
        self,
        topology: Topology,
        rate: float = 20,
        write_rate: float = 1,
        max_seconds: int = 600,
        tag: str | None = None,
        request_log: bool = False,
    ):
        self.topology = topology
        self.tag = tag or f"load-{uuid.uuid4().hex[:8]}"
        # The tag goes into a path, a shell command and a LIKE pattern: nothing else allowed.
        if not self.tag.replace("-", "").isalnum() or not self.tag.isascii():
            raise ValueError(f"a load's tag is letters, digits and dashes: {self.tag!r}")
        # loadgen refuses a longer run, and it starts detached: its usage error would go unseen.
        if not 0 < max_seconds <= LOADGEN_MAX_SECONDS:
            raise ValueError(f"a load runs at most {LOADGEN_MAX_SECONDS} s, not {max_seconds}")
        self.dir = f"/root/{self.tag}"
        self.rate = rate
        self.write_rate = write_rate
        self.max_seconds = max_seconds
        self.request_log = request_log
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
            f" --header-file {CLIENT_HEADERS} --cafile {ROOT_CA}"
            + (f" --log-file {self.dir}/requests.jsonl" if self.request_log else "")
            + f" > {self.dir}/summary.json 2>&1"
        )
        self.started_at = time.time()
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
                    if self.summary["failed"] or self.summary["writes"]["failed"]:
                        self.print_edge_failures()
                    return self.summary
                time.sleep(1)
            raise AssertionError("the load generator wrote no summary within 60 s")
        return self.summary

    def print_edge_failures(self, most: int = 40) -> None:
        """What nginx on the site saw of the failed requests since the load started: its access
        log's 5xx answers (which upstream answered what, how long it took) and its error log,
        the last `most` lines of each, so a failed load test says where requests failed."""
        site = self.topology.site
        access_log = Topology.sh(site, "grep -h '\"status\":5' /var/log/nginx/stet_access.log || true")
        answers = [
            line
            for line in access_log.splitlines()
            if datetime.datetime.fromisoformat(json.loads(line)["time"]).timestamp() >= self.started_at - 1
        ]
        # The error log's lines start with "YYYY/MM/DD HH:MM:SS" in the host's zone, UTC here.
        since = time.strftime("%Y/%m/%d %H:%M:%S", time.gmtime(self.started_at - 1))
        error_log = Topology.sh(site, "cat /var/log/nginx/stet_error.log 2>/dev/null || true")
        errors = [line for line in error_log.splitlines() if line[:19] >= since]
        for what, lines in (("5xx answers", answers), ("error log lines", errors)):
            print(f"nginx on {site}: {len(lines)} {what} since the load started (the last {most}):")
            for line in lines[-most:]:
                print(" ", line)
        self.print_instance_failures(answers, most)
        # The controller shares this machine with the test hosts: was it starved meanwhile?
        for resource in ("cpu", "io"):
            pressure = pathlib.Path(f"/proc/pressure/{resource}").read_text().strip()
            print(f"this machine's {resource} pressure:", pressure)

    def print_instance_failures(self, answers: list[str], most: int) -> None:
        """Each API instance's own access log lines of its 5xx answers since the load started,
        with the `error` the app names (the driver's error, or its pool's state)."""
        instances = set()
        for line in answers:
            for upstream in json.loads(line)["upstream_addr"].split(", "):
                address, _, port = upstream.rpartition(":")
                if port.isdigit():
                    instances.add((address, port))
        if not instances:
            return
        running = subprocess.run(["docker", "ps", "-q"], capture_output=True, text=True, check=True).stdout
        template = "{{.Name}} {{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"
        inspected = subprocess.run(
            ["docker", "inspect", "-f", template, *running.split()],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        hosts = {"127.0.0.1": self.topology.site}
        for row in inspected.splitlines():
            name, *addresses = row.split()
            hosts.update(dict.fromkeys(addresses, name.lstrip("/")))
        for address, port in sorted(instances):
            host = hosts.get(address)
            if host is None:
                continue
            journal = Topology.sh(
                host,
                f"journalctl -u stet-api@{port} --since @{int(self.started_at) - 1} -o cat --no-pager"
                " | grep '\"status\": 5' || true",
            )
            lines = journal.splitlines()
            print(f"stet-api@{port} on {host}: {len(lines)} 5xx answers since the load began (last {most}):")
            for line in lines[-most:]:
                print(" ", line)

    def lines(self, name: str) -> list[dict]:
        """A JSON-lines file of the load's directory on the client (acked.jsonl, requests.jsonl)."""
        text = Topology.sh(self.topology.client, f"cat {self.dir}/{name} 2>/dev/null || true", timeout=60)
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def requests(self) -> list[dict]:
        """Every request sent so far, from the request log (a load made with request_log)."""
        if not self.request_log:
            raise ValueError("this load keeps no request log: Load(..., request_log=True)")
        return self.lines("requests.jsonl")

    def service_back_after(
        self, fault_at: float, requests: list[dict] | None = None
    ) -> tuple[float | None, int]:
        """back_after() of the request log (or of `requests`, some of its lines)."""
        return back_after(self.requests() if requests is None else requests, fault_at)

    def wait_for_service(self, fault_at: float, timeout: float, steady_seconds: float) -> bool:
        """Keeps the load on until requests have succeeded for `steady_seconds` in a row after
        the last failure, polling the request log every 2 s for at most `timeout` seconds, so
        a slow recovery is measured rather than cut off; False when the time ran out."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                requests = self.requests()
            except (RuntimeError, subprocess.TimeoutExpired):
                requests = []  # the client did not answer this time: asked again
            back, _ = self.service_back_after(fault_at, requests)
            latest = max((r["started"] for r in requests), default=0.0)
            if requests and back is not None and latest - (fault_at + back) >= steady_seconds:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(2)

    def corrections_check(self, database_host: str) -> dict:
        """The load's acknowledged corrections against the rows the database on `database_host` holds."""
        acked = {f"{self.tag}-{entry['seq']}": entry["correction_id"] for entry in self.lines("acked.jsonl")}
        # The tag is checked in __init__ (letters, digits, dashes): safe inside the literal.
        query = (
            "SELECT idempotency_key, correction_id FROM corrections"  # noqa: S608
            f" WHERE idempotency_key LIKE '{self.tag}-%'"
        )
        rows = Topology.psql(database_host, query, timeout=60)
        stored = dict(line.split(" ", 1) for line in rows.splitlines() if line.strip())
        check = {
            "acknowledged": len(acked),
            "stored": len(stored),
            "lost": sorted(key for key, correction_id in acked.items() if stored.get(key) != correction_id),
            # Committed while the client saw an error (a connection dropped after the commit).
            "unacknowledged_commits": sorted(set(stored) - set(acked)),
            "database": database_host,
            "md5_acknowledged": md5_of(acked.values()),
            "md5_stored": md5_of(stored.values()),
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
