"""Failure drills under load on the production scenario's hosts (`make drills`).

Session fixtures: `production`, the topology up and in shape (created and converged with
Molecule only when it is missing or not in shape; a host a drill left stopped is started
again and Patroni rejoins it as a standby by itself); `client`, the client host prepared
with the tests' tenant key; `load`, a factory of Loads (molecule/shared/e2e.py) through the
load balancer that log every request. `drill` makes one Drill: a fault under load, its
figures and its checks. At the end of the session the figures of every drill are printed as
a table (never judged: a slow recovery fails nothing) and written as JSON under
.cache/drills/.

Load goes only to the test containers (loadgen refuses any other address); every wait is
bounded.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import re
import subprocess
import sys
import time
import traceback

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))
from e2e import ETCDCTL, HAPROXY_STATE, PATRONICTL, REPO, Load, Topology, back_after, is_failure

log = logging.getLogger("drills")

VENV_BIN = REPO / ".venv" / "bin"
# Molecule, ansible and ansible-playbook of the repository's venv, however pytest was started.
os.environ["PATH"] = f"{VENV_BIN}:{os.environ.get('PATH', '')}"
SCENARIO = "production"
LB = "stet-prod-lb"
CLIENT = "stet-prod-acme"  # outside the topology: the requests come from here
API1, API2 = "stet-prod-api1", "stet-prod-api2"
API_HOSTS = (API1, API2)
# Patroni runs PostgreSQL on both database hosts; the leader moves, so the drills ask for it.
DB_HOSTS = ("stet-prod-db1", "stet-prod-db2")
# etcd's three members: the database hosts and one API host.
ETCD_HOSTS = (*DB_HOSTS, API1)
HOSTS = (LB, API1, API2, *DB_HOSTS, CLIENT)
API_PORTS = (8000, 8001)
DATABASE_URL_FILE = "/etc/stet/secrets/database_url"
# Every API host's URL names the same target whoever leads: HAProxy on 127.0.0.1 (hostaddr).
DATABASE_URL_TARGET = "stet-db:6432"
# A database host cut off from the network (drill 8); docker exec still reaches it.
NETWORK_CUT = (("INPUT", "! -i lo -j DROP"), ("OUTPUT", "! -o lo -j DROP"))
# Until a member stopped or cut off by a drill is the leader's streaming sync standby again
# (Patroni starts it, rewinds it when it diverged, and re-creates its slot).
REJOIN_TIMEOUT = 240
# Until a leader demoted while cut off answers queries again: its shutdown waits for the
# archiver, whose archive-push gives up on the unreachable repository after its retries
# (216 s measured), and refuses every connection meanwhile.
DEMOTED_ANSWERS_TIMEOUT = 330
REPORT_DIR = REPO / ".cache" / "drills"
RUN_ID = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
# Load before the fault, and after requests succeed again.
SETTLE_BEFORE = 8
SETTLE_AFTER = 5
# After a fault: how long requests may take to succeed again, and for how long in a row.
SERVICE_TIMEOUT = 180
STEADY_SECONDS = 5

sh, succeeds, psql = Topology.sh, Topology.succeeds, Topology.psql
RESULTS = pytest.StashKey[list]()
STARTED = pytest.StashKey[float]()


def pytest_addoption(parser):
    group = parser.getgroup("drills", "failure drills (molecule/production/drills)")
    group.addoption("--drills-rate", type=float, default=8.0, help="reads per second (default 8)")
    group.addoption(
        "--drills-write-rate",
        type=float,
        default=1.0,
        help="writes per second (default 1: under the API's 100/min per key and nginx's limit)",
    )
    group.addoption("--drills-no-up", action="store_true", help="do not create or converge the topology")
    group.addoption("--drills-report", help="the JSON report (default .cache/drills/<run id>.json)")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "destructive: leaves the topology changed (the database hosts rebuilt); runs last"
    )
    config.stash[RESULTS] = []
    config.stash[STARTED] = time.monotonic()
    # Progress as it happens (the drills take minutes): live logs unless asked otherwise.
    if config.option.log_cli_level is None:
        config.option.log_cli_level = "INFO"
    if config.option.log_cli_format is None:
        config.option.log_cli_format = "%(asctime)s %(message)s"
    if config.option.log_cli_date_format is None:
        config.option.log_cli_date_format = "%H:%M:%S"
    rate, write_rate = config.option.drills_rate, config.option.drills_write_rate
    if not 0 < rate <= 50:
        raise pytest.UsageError("--drills-rate must be in (0, 50]")
    if not 0 < write_rate <= 1.5:
        raise pytest.UsageError("--drills-write-rate must be in (0, 1.5]: above it the API answers 429")


def pytest_collection_modifyitems(config, items):
    """`make drills DRILLS=1` selects `-k "drill_1"`, which pytest matches as a substring, so
    also drills 10 and 11: an expression of drill numbers alone keeps exactly those drills."""
    expression = config.option.keyword or ""
    if not re.fullmatch(r"\s*drill_\d+(\s+or\s+drill_\d+)*\s*", expression):
        return
    wanted = set(re.findall(r"drill_(\d+)", expression))
    keep, drop = [], []
    for item in items:
        number = re.match(r"test_drill_(\d+)_", item.name)
        (keep if number is None or number.group(1) in wanted else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


# --- commands and health of the parts ---------------------------------------------------------


def docker(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])}…: rc={result.returncode} {result.stderr.strip()}")
    return result


def wait_until(check, timeout: float, interval: float = 0.5) -> float | None:
    """Seconds until check() is true, polled every interval; None when timeout passes first."""
    started = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - started
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        if time.monotonic() - started > timeout:
            return None
        time.sleep(interval)


def since(moment: float, waited: float | None) -> float | None:
    """Seconds from an epoch moment to now, rounded; None when the wait that ended now failed."""
    return None if waited is None else round(time.time() - moment, 1)


def exists(host: str) -> bool:
    return docker("inspect", "-f", "{{.Name}}", host, check=False).returncode == 0


def running(host: str) -> bool:
    result = docker("inspect", "-f", "{{.State.Running}}", host, check=False)
    return result.returncode == 0 and result.stdout.strip() == "true"


def booted(host: str) -> bool:
    """systemd finished starting the host ("degraded": booted with a failed unit)."""
    state = sh(host, "systemctl is-system-running --wait || true", timeout=120).strip()
    return state in ("running", "degraded")


def address(host: str) -> str:
    return docker(
        "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", host
    ).stdout.strip()


def instance_ready(host: str, port: int, via: str | None = None) -> bool:
    """/ready of one API instance, asked on the host itself or from `via` (the load balancer),
    over TLS verified against the platform CA as nginx does (name stet-api)."""
    target = "127.0.0.1" if via is None else address(host)
    return succeeds(
        via or host,
        f"curl -sf -m 3 -o /dev/null --cacert /etc/ssl/stet-pki/ca.crt"
        f" --resolve stet-api:{port}:{target} https://stet-api:{port}/ready",
    )


def main_pid(host: str, port: int) -> str:
    return sh(host, f"systemctl show -p MainPID --value stet-api@{port}").strip()


def members(*hosts: str) -> list[dict]:
    """`patronictl list` as JSON, asked on the first of `hosts` (default: the database hosts)
    that answers; RuntimeError when none does (a stopped host, or one cut off from etcd)."""
    errors = []
    for host in hosts or DB_HOSTS:
        try:
            return json.loads(sh(host, f"{PATRONICTL} list --format json", timeout=20))
        except (RuntimeError, subprocess.TimeoutExpired, ValueError) as error:
            errors.append(f"{host}: {str(error).strip()[:200]}")
    raise RuntimeError("patronictl answered on no database host: " + "; ".join(errors))


def leader_of(listed: list[dict]) -> str | None:
    leaders = [m["Member"] for m in listed if m.get("Role") == "Leader"]
    return leaders[0] if len(leaders) == 1 else None


def standby_of(listed: list[dict]) -> str | None:
    """The synchronous standby, else any other member; None when there is none."""
    others = [m for m in listed if m.get("Role") != "Leader"]
    others.sort(key=lambda m: m.get("Role") != "Sync Standby")
    return others[0]["Member"] if others else None


def healthy_cluster(listed: list[dict]) -> bool:
    """One leader and a synchronous standby streaming on the leader's timeline."""
    leaders = [m for m in listed if m.get("Role") == "Leader"]
    if len(leaders) != 1:
        return False
    timeline = leaders[0].get("TL")
    return any(
        m.get("Role") == "Sync Standby"
        and m.get("State") in ("running", "streaming")
        and m.get("TL") == timeline
        for m in listed
    )


def describe(listed: list[dict]) -> str:
    return ", ".join(
        f"{m.get('Member')} {m.get('Role')} {m.get('State')} TL {m.get('TL', '-')}" for m in listed
    )


def members_text(*hosts: str) -> str:
    """The members as patronictl lists them, for a message; or why nobody answered."""
    try:
        return describe(members(*hosts))
    except RuntimeError as error:
        return str(error)


def leader(*hosts: str) -> str | None:
    """The leader's member name (its container); None when the cluster has none."""
    return leader_of(members(*hosts))


def standby(*hosts: str) -> str | None:
    return standby_of(members(*hosts))


def cluster_healthy(*hosts: str) -> bool:
    return healthy_cluster(members(*hosts))


def rejoined_as_standby(member: str, *hosts: str) -> bool:
    """`member` is the streaming sync standby of a healthy cluster."""
    listed = members(*hosts)
    return healthy_cluster(listed) and standby_of(listed) == member and leader_of(listed) != member


def etcd_healthy() -> bool:
    """Every etcd member answers healthy, asked on the first member that answers."""
    for host in ETCD_HOSTS:
        try:
            endpoints = json.loads(sh(host, f"{ETCDCTL} endpoint health --cluster -w json", timeout=30))
        except (RuntimeError, subprocess.TimeoutExpired, ValueError):
            continue
        return len(endpoints) == len(ETCD_HOSTS) and all(endpoint.get("health") for endpoint in endpoints)
    return False


def haproxy_up(host: str) -> list[str]:
    """The database hosts HAProxy on an API host sends connections to (status UP)."""
    rows = [line.split(",") for line in sh(host, HAPROXY_STATE, timeout=30).splitlines()]
    return sorted(
        row[1]
        for row in rows
        if len(row) > 17
        and row[0] == "postgres"
        and row[1] not in ("FRONTEND", "BACKEND")
        and row[17] == "UP"
    )


def cut_network(host: str) -> None:
    """Drops every packet but loopback's on a host, first in its chains (drill 8)."""
    sh(host, " && ".join(f"iptables -I {chain} 1 {rule}" for chain, rule in NETWORK_CUT), timeout=30)


def heal_network_cut(host: str) -> None:
    """Removes the rules of drill 8's network cut from a host (an interrupted drill's too, even
    inserted twice); RuntimeError when one is still there."""
    for chain, rule in NETWORK_CUT:
        sh(
            host,
            f"for _ in 1 2 3 4 5; do iptables -C {chain} {rule} 2>/dev/null || break;"
            f" iptables -D {chain} {rule}; done; ! iptables -C {chain} {rule} 2>/dev/null",
            timeout=30,
        )


def pgbouncer_ready(host: str) -> bool:
    return succeeds(host, "systemctl is-active -q pgbouncer && pg_isready -q -h 127.0.0.1 -p 6432")


def database_url_target(host: str, path: str = DATABASE_URL_FILE) -> str:
    """host:port of a database URL file (the part after '@'): the password is never printed."""
    return sh(host, f"sed -e 's/^.*@//' -e 's#/.*##' {path}").strip()


# --- the topology -----------------------------------------------------------------------------


class Production:
    """The production scenario's hosts as the drills need them: up and in shape, with the
    Topology of molecule/shared/e2e.py (commands, playbooks, the client) on them."""

    def __init__(self) -> None:
        # The inventory is Molecule's, known once the scenario's hosts exist.
        self.topology = Topology(site=LB, client=CLIENT, token_host=API1, inventory="")

    @staticmethod
    def molecule(command: str) -> None:
        output = REPORT_DIR / f"molecule-{command}.log"
        output.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
        log.info("molecule %s -s %s (log %s)", command, SCENARIO, output)
        with output.open("w") as out:
            result = subprocess.run(
                [str(VENV_BIN / "molecule"), command, "-s", SCENARIO],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=3600,
            )
        if result.returncode != 0:
            raise RuntimeError(
                f"molecule {command} -s {SCENARIO} failed (exit {result.returncode}), see {output}"
            )

    @staticmethod
    def inventory_file() -> pathlib.Path:
        """The inventory Molecule wrote for the scenario (its host_vars linked in)."""
        if os.environ.get("STET_DRILLS_INVENTORY"):
            return pathlib.Path(os.environ["STET_DRILLS_INVENTORY"]) / "ansible_inventory.yml"
        from molecule.text import checksum  # the venv's molecule: the name it gives the directory

        name = f"molecule.{checksum(REPO.name, 4)}.{SCENARIO}"
        candidates = [
            base / "tmp" / name / "inventory" / "ansible_inventory.yml"
            for base in (
                pathlib.Path(os.environ.get("VIRTUAL_ENV", VENV_BIN.parent)) / ".ansible",
                pathlib.Path.home() / ".ansible",
            )
        ]
        found = [path for path in candidates if path.exists()]
        if not found:
            raise RuntimeError(
                f"no Molecule inventory for {SCENARIO} in {candidates}; set STET_DRILLS_INVENTORY"
            )
        return max(found, key=lambda path: path.stat().st_mtime)

    def playbook(self, name: str, output: pathlib.Path, timeout: int, *extra: str) -> int:
        """playbooks/<name> against the scenario's inventory (Topology.playbook), its whole
        output to a file; returns the exit status (-1 when it timed out)."""
        output.parent.mkdir(parents=True, exist_ok=True)
        try:
            result = self.topology.playbook(name, *extra, timeout=timeout)
        except subprocess.TimeoutExpired as error:
            output.write_text(f"timed out after {timeout} s\n{error.stdout or ''}")
            return -1
        output.write_text(result.stdout + result.stderr)
        return result.returncode

    def recreate(self, *hosts: str) -> None:
        """Fresh, empty hosts in place of `hosts`, which must be gone: Molecule's create playbook
        (molecule/shared/create.yml) with Molecule's environment makes the missing containers
        and leaves the others as they are."""
        inventory = self.inventory_file()
        ephemeral = inventory.parent.parent
        env = dict(
            os.environ,
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            MOLECULE_FILE=str(ephemeral / "molecule.yml"),
            MOLECULE_EPHEMERAL_DIRECTORY=str(ephemeral),
            MOLECULE_INSTANCE_CONFIG=str(ephemeral / "instance_config.yml"),
            MOLECULE_SCENARIO_DIRECTORY=str(REPO / "molecule" / SCENARIO),
        )
        output = REPORT_DIR / "recreate.log"
        with output.open("w") as out:
            result = subprocess.run(
                [
                    str(VENV_BIN / "ansible-playbook"),
                    "-i",
                    str(inventory.parent),
                    str(REPO / "molecule" / "shared" / "create.yml"),
                ],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=600,
            )
        missing = [host for host in hosts if not running(host)]
        if result.returncode != 0 or missing:
            raise RuntimeError(
                f"recreating {', '.join(hosts)} failed (exit {result.returncode}), see {output}"
            )

    def shape_problems(self) -> list[str]:
        """What keeps the running hosts from being the production topology the drills expect."""
        problems = [f"{host} is not running" for host in HOSTS if not running(host)]
        if problems:
            return problems
        current = None
        try:
            listed = members()
        except RuntimeError as error:
            problems.append(str(error))
        else:
            current = leader_of(listed)
            if not healthy_cluster(listed):
                problems.append(f"Patroni has no leader with a streaming sync standby: {describe(listed)}")
        if not etcd_healthy():
            problems.append(f"etcd does not have {len(ETCD_HOSTS)} healthy members")
        problems += [f"PgBouncer does not answer on {host}" for host in DB_HOSTS if not pgbouncer_ready(host)]
        for host in API_HOSTS:
            target = database_url_target(host)
            if target != DATABASE_URL_TARGET:
                problems.append(f"{host}'s DATABASE_URL names {target}, not HAProxy's {DATABASE_URL_TARGET}")
            try:
                up = haproxy_up(host)
            except (RuntimeError, subprocess.TimeoutExpired):
                problems.append(f"HAProxy's admin socket does not answer on {host}")
                continue
            if current is not None and up != [current]:
                problems.append(f"HAProxy on {host} has {up or 'no host'} up, not the leader {current} alone")
            for port in API_PORTS:
                if not instance_ready(host, port, via=LB):
                    problems.append(f"{host}:{port} is not ready")
        return problems

    def ensure(self) -> None:
        """Creates and converges the scenario unless it is up and in shape. A stopped host is
        started again and Patroni given time to rejoin it (rewound when it diverged: no
        playbook), a network cut an interrupted drill left is removed; converge only when
        that is not enough."""
        if not all(exists(host) for host in HOSTS):
            self.molecule("create")
            self.molecule("converge")
        else:
            for host in HOSTS:
                if not running(host):
                    log.info("starting %s", host)
                    docker("start", host, timeout=120)
                    if wait_until(lambda h=host: booted(h), 180, 2) is None:
                        raise RuntimeError(f"{host} did not finish booting")
            for host in DB_HOSTS:
                heal_network_cut(host)
            if wait_until(cluster_healthy, 180, 2) is None:
                log.info("Patroni has no leader with a streaming sync standby after 180 s")
        self.topology.inventory = str(self.inventory_file())
        # HAProxy marks a new leader up within a few of its health checks.
        wait_until(lambda: not self.shape_problems(), 20, 4)
        problems = self.shape_problems()
        if problems:
            log.info("not in shape: %s", "; ".join(problems))
            self.molecule("converge")
            self.restart_stale_instances()
            problems = self.shape_problems()
            if problems:
                raise RuntimeError("the production topology is not in shape: " + "; ".join(problems))
        log.info("production topology up and in shape")

    @staticmethod
    def restart_stale_instances() -> None:
        """The roles rewrite the API hosts' DATABASE_URL without restarting the instances:
        restarts, one at a time, those still running with the previous one."""
        for host in API_HOSTS:
            wanted = database_url_target(host)
            for port in API_PORTS:
                if database_url_target(host, f"/run/stet-api-{port}/database_url") == wanted:
                    continue
                log.info("restarting %s stet-api@%s on its new database URL", host, port)
                sh(host, f"systemctl restart stet-api@{port}", timeout=120)
                if wait_until(lambda h=host, p=port: instance_ready(h, p), 120, 1) is None:
                    raise RuntimeError(f"{host}:{port} did not become ready after a restart")


@pytest.fixture(scope="session")
def production(pytestconfig) -> Production:
    """The production topology, up and in shape."""
    topology = Production()
    if pytestconfig.option.drills_no_up:
        topology.topology.inventory = str(topology.inventory_file())
    else:
        topology.ensure()
    problems = topology.shape_problems()
    if problems:
        pytest.fail("the production topology is not in shape: " + "; ".join(problems))
    return topology


@pytest.fixture(scope="session")
def client(production):
    """The client host trusts pebble's root and holds the tests' tenant key (e2e.Topology)."""
    return production.topology.prepare_client()


@pytest.fixture(scope="session")
def load(production, client, pytestconfig):
    """Makes a Load through the load balancer from the client, named by `tag`, with a log of
    every request: reads at --drills-rate and writes at --drills-write-rate until stopped
    (at most max_seconds)."""

    def make(tag: str, max_seconds: int = 300) -> Load:
        return Load(
            production.topology,
            rate=pytestconfig.option.drills_rate,
            write_rate=pytestconfig.option.drills_write_rate,
            max_seconds=max_seconds,
            tag=tag,
            request_log=True,
        )

    return make


# --- a drill ----------------------------------------------------------------------------------


class Drill:
    """One fault under load. `run(fault)` starts the load, lets it settle, calls fault(), which
    breaks something and returns the moment it began (epoch seconds) and the seconds until
    the component was healthy again (None: never), keeps the load on until requests have
    succeeded again for a while (bounded), stops it and compares the corrections the service
    acknowledged with what `drill.database` holds: the leader when the drill was made, or
    where a drill that moved it found it afterwards (`follow_leader`). The figures go to the
    session's table; `assert_held()` fails the test on a lost correction, a component or
    service that never came back, a write accepted by a node that was no longer leader, a
    member that did not rejoin, or a failed check of the drill's own (`drill.check`)."""

    def __init__(self, make_load, results: list, number: int, name: str, fault: str, **options):
        self.make_load = make_load
        self.number, self.name, self.fault_text = number, name, fault
        self.max_seconds = options.get("max_seconds", 300)
        # False: nothing to wait for after the fault (the drill undoes it itself).
        self.has_component = options.get("has_component", True)
        # Seconds before the fault within which an acknowledged write may be lost (the archive
        # lag of a restore from the backup repository); None: none may be.
        self.loss_window = options.get("loss_window")
        self.tag = f"drill-{RUN_ID}-{number}"
        self.database = leader()
        self.checks: list[str] = []
        self.notes: list[str] = []
        self.result: dict = {
            "drill": number,
            "name": name,
            "fault": fault,
            "has_component": self.has_component,
            "leader_before": self.database,
        }
        results.append(self.result)

    def check(self, ok: bool, problem: str) -> None:
        if not ok:
            log.warning("drill %s %s: %s", self.number, self.name, problem)
            self.checks.append(problem)

    def note(self, text: str) -> None:
        log.info("drill %s %s: %s", self.number, self.name, text)
        self.notes.append(text)

    def follow_leader(self, *hosts: str) -> str | None:
        """After a drill moved the leader: acknowledged writes are looked for on the new one
        (asked on `hosts`, default the database hosts); the old one stays when none answers."""
        try:
            current = leader(*hosts)
        except RuntimeError as error:
            self.note(f"no leader found: {error}")
            current = None
        self.result["leader_after"] = current
        if current is not None:
            self.database = current
        return current

    def count_split_brain(self, old: str, new: str) -> int | None:
        """Writes accepted by a node that was no longer leader: rows of this drill's load on
        `old` (the leader before the fault) that `new` lacks. Asked through docker exec, which
        reaches a host cut off from the network; retried while `old` restarts as a standby: a
        leader demoted while cut off refuses every connection until its shutdown ends, which
        waits for the archiver to give up on the repository, so the seconds it refused are
        noted. A diverged old leader is rewound when it rejoins, so this is counted before."""
        # The tag is letters, digits and dashes (Load checks it): safe inside the literal.
        query = f"SELECT idempotency_key FROM corrections WHERE idempotency_key LIKE '{self.tag}-%'"  # noqa: S608
        rows: dict[str, set[str]] = {}

        def read(host: str) -> bool:
            rows[host] = set(psql(host, query, timeout=60).split())
            return True

        refused = wait_until(lambda: read(old), DEMOTED_ANSWERS_TIMEOUT, 2)
        if refused is not None and refused > 2:
            self.note(f"{old} (old leader) refused connections for {refused:.0f} s more")
        if refused is None or wait_until(lambda: read(new), 60, 2) is None:
            self.result["split_brain_writes"] = None
            self.check(False, f"split-brain writes not counted: {old} or {new} did not answer")
            return None
        extra = sorted(rows[old] - rows[new])
        self.result.update(split_brain_writes=len(extra), split_brain_keys=extra)
        self.note(f"rows on {old} (old leader) missing from {new} (new leader): {len(extra)}")
        self.check(not extra, f"{len(extra)} writes accepted by {old} after it stopped leading: {extra[:5]}")
        return len(extra)

    def wait_rejoined(self, member: str, moment: float, *hosts: str) -> float | None:
        """Waits (bounded) until `member` is the leader's streaming sync standby again with no
        playbook run; records whether it rejoined and the seconds from `moment` (epoch)."""
        waited = wait_until(lambda: rejoined_as_standby(member, *hosts), REJOIN_TIMEOUT, 2)
        seconds = since(moment, waited)
        self.result.update(rejoined=waited is not None, rejoined_s=seconds)
        if waited is None:
            listed = members_text(*hosts)
            self.check(False, f"{member} did not rejoin as a standby within {REJOIN_TIMEOUT} s ({listed})")
        else:
            self.note(f"{member} rejoined as the sync standby by itself after {seconds} s")
        return seconds

    def run(self, fault, cleanup=None, after=None) -> dict:
        """`cleanup()` puts back what the fault changed when it stopped half-way; `after(requests,
        fault_at)` checks the load's request log."""
        log.info("drill %s %s: %s", self.number, self.name, self.fault_text)
        started = time.monotonic()
        try:
            self._under_load(fault, cleanup, after)
        except Exception as error:  # recorded: the table still gets this drill's row
            traceback.print_exc()
            self.check(False, f"drill error: {error}")
        if "leader_after" not in self.result:
            try:
                self.result["leader_after"] = leader()
            except RuntimeError:
                self.result["leader_after"] = None
        self.result.update(problems=self.checks, notes=self.notes, seconds=round(time.monotonic() - started))
        figures = {
            k: v for k, v in self.result.items() if k not in ("corrections", "statuses", "split_brain_keys")
        }
        log.info("drill %s %s: %s", self.number, self.name, json.dumps(figures))
        return self.result

    def _under_load(self, fault, cleanup, after) -> None:
        fault_at = component_s = None
        with self.make_load(self.tag, self.max_seconds) as load:
            try:
                time.sleep(SETTLE_BEFORE)
                fault_at, component_s = fault()
                self.check(component_s is not None or not self.has_component, "component never healthy again")
                if not load.wait_for_service(fault_at, SERVICE_TIMEOUT, STEADY_SECONDS):
                    log.warning("requests still fail %s s after the fault", SERVICE_TIMEOUT)
                time.sleep(SETTLE_AFTER)
            except Exception as error:  # a broken fault: still stop the load and count
                traceback.print_exc()
                self.check(False, f"drill error: {error}")
            finally:
                if cleanup is not None:
                    try:
                        cleanup()
                    except Exception as error:
                        self.check(False, f"cleanup error: {error}")
            summary = load.stop()
        requests = load.requests()
        service_s, failed_after = (None, 0)
        if fault_at is not None:
            service_s, failed_after = load.service_back_after(fault_at, requests)
        self.check(fault_at is None or service_s is not None, "requests never succeeded again")
        self.result.update(
            sent=summary["sent"],
            failed=summary["failed"],
            rate_limited=summary.get("rate_limited", 0),
            writes=summary.get("writes", {}),
            statuses=summary["statuses"],
            service_s=service_s,
            failed_after_fault=failed_after,
            component_s=component_s,
        )
        if fault_at is not None:
            self._writes_back(requests, fault_at)
        if after is not None and fault_at is not None:
            after(requests, fault_at)
        if self.database is None:
            self.check(False, "no leader: the corrections were not checked")
            return
        corrections = load.corrections_check(self.database)
        self.result["corrections"] = corrections
        lost = corrections["lost"]
        if lost and self.loss_window is not None and fault_at is not None:
            acked_at = {
                f"{self.tag}-{entry['seq']}": entry["acked_at"] for entry in load.lines("acked.jsonl")
            }
            # How far back before the fault the lost writes reach: the archive lag, as measured.
            self.result["lost_seconds_before_fault"] = round(fault_at - min(acked_at[key] for key in lost), 1)
            lost = [key for key in lost if acked_at[key] < fault_at - self.loss_window]
        self.check(not lost, f"{len(lost)} acknowledged corrections lost")
        if self.result.get("split_brain_keys"):
            acked = {f"{self.tag}-{entry['seq']}" for entry in load.lines("acked.jsonl")}
            self.note(
                f"of the split-brain writes, {len(acked & set(self.result['split_brain_keys']))}"
                " were acknowledged to the client"
            )

    def _writes_back(self, requests: list[dict], fault_at: float) -> None:
        """Seconds until writes succeed again for good, and the span of the failed writes."""
        writes = [r for r in requests if r["kind"] == "write"]
        write_s, _ = back_after(writes, fault_at)
        failed = [r for r in writes if r["finished"] >= fault_at and is_failure(r["status"])]
        window = (
            round(max(r["finished"] for r in failed) - min(r["started"] for r in failed), 1)
            if failed
            else 0.0
        )
        self.result.update(writes_back_s=write_s, write_errors_s=window, failed_writes=len(failed))
        self.note(f"writes succeed again after {write_s} s; {len(failed)} writes failed over {window} s")

    def assert_held(self) -> None:
        assert not self.checks, f"drill {self.number} {self.name}: " + "; ".join(self.checks)


@pytest.fixture
def drill(load, request):
    """drill(number, name, fault text, max_seconds=300, has_component=True, loss_window=None):
    a Drill whose figures go to the session's table."""
    results = request.config.stash[RESULTS]
    return lambda number, name, fault, **options: Drill(load, results, number, name, fault, **options)


# --- the table --------------------------------------------------------------------------------


def seconds_cell(seconds: float | None, applies: bool) -> str:
    """A cell of seconds: "-" when there is nothing to measure, "never" when it did not come
    back within the drill's bounds."""
    if not applies:
        return "-"
    return "never" if seconds is None else str(seconds)


def short(host: str | None) -> str:
    return "none" if host is None else host.removeprefix("stet-prod-")


def leader_cell(r: dict) -> str:
    """The leader before the drill, and after it when it moved ("-": not asked)."""
    if "leader_before" not in r:
        return "-"
    before, after = r["leader_before"], r.get("leader_after", r["leader_before"])
    return short(before) if after == before else f"{short(before)} -> {short(after)}"


def table(results: list[dict]) -> str:
    head = (
        "drill",
        "sent",
        "failed",
        "429",
        "service back s",
        "writes back s",
        "component back s",
        "leader",
        "rejoined s",
        "split-brain writes",
        "acked vs stored",
        "checksum",
    )
    rows = [head]
    for r in results:
        c = r.get("corrections")
        if c:
            extra = len(c["unacknowledged_commits"])
            stored = f"{c['acknowledged']} vs {c['stored']}" + (f" ({extra} unacked)" if extra else "")
            match = (
                "match"
                if c["md5_acknowledged"] == c["md5_stored"]
                else (
                    f"LOST {len(c['lost'])}"
                    + (
                        f" (acked <= {r['lost_seconds_before_fault']} s before the fault)"
                        if "lost_seconds_before_fault" in r
                        else ""
                    )
                    if c["lost"]
                    else "differs (unacked commits only)"
                )
            )
        else:
            stored, match = "-", "not checked"
        service = seconds_cell(r.get("service_s"), applies="sent" in r)
        writes = seconds_cell(r.get("writes_back_s"), applies="writes_back_s" in r)
        component = seconds_cell(r.get("component_s"), applies=r["has_component"])
        rejoined = seconds_cell(r.get("rejoined_s"), applies="rejoined" in r)
        split = r.get("split_brain_writes", "-")
        rows.append(
            (
                f"{r['drill']} {r['name']}",
                str(r.get("sent", "-")),
                str(r.get("failed", "-")),
                str(r.get("rate_limited", "-")),
                service,
                writes,
                component,
                leader_cell(r),
                rejoined,
                "not counted" if split is None else str(split),
                stored,
                match,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [
        " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    results = config.stash.get(RESULTS, [])
    if not results:
        return
    write = terminalreporter.write_line
    terminalreporter.section("failure drills: figures (measured, never judged)")
    for line in table(results).splitlines():
        write(line)
    for r in results:
        for note in r.get("notes", []):
            write(f"  drill {r['drill']}: {note}")
        for problem in r.get("problems", []):
            write(f"  drill {r['drill']} FAILED: {problem}")
    report = pathlib.Path(config.option.drills_report or REPORT_DIR / f"{RUN_ID}.json")
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(results, indent=2) + "\n")
    write(f"report: {report}")
    write(f"total: {round(time.monotonic() - config.stash[STARTED])} s")
