"""Failure drills under load on the production scenario's hosts (`make drills`).

Session fixtures: `production`, the topology up and in shape (created and converged with
Molecule only when it is missing or not in shape; after a failover drill the old primary is
started again and the promoted replica rebuilt from it); `client`, the client host prepared
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
import subprocess
import sys
import time
import traceback

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))
from e2e import REPO, Load, Topology

log = logging.getLogger("drills")

VENV_BIN = REPO / ".venv" / "bin"
# Molecule, ansible and ansible-playbook of the repository's venv, however pytest was started.
os.environ["PATH"] = f"{VENV_BIN}:{os.environ.get('PATH', '')}"
SCENARIO = "production"
LB = "stet-prod-lb"
CLIENT = "stet-prod-acme"  # outside the topology: the requests come from here
API1, API2 = "stet-prod-api1", "stet-prod-api2"
API_HOSTS = (API1, API2)
PRIMARY, REPLICA = "stet-prod-db1", "stet-prod-db2"
HOSTS = (LB, API1, API2, PRIMARY, REPLICA, CLIENT)
API_PORTS = (8000, 8001)
DATABASE_URL_FILE = "/etc/stet/secrets/database_url"
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
    config.addinivalue_line("markers", "destructive: leaves the topology changed (the failover); runs last")
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
    """/ready of one API instance, asked on the host itself or from `via` (the load balancer)."""
    target = "127.0.0.1" if via is None else address(host)
    return succeeds(via or host, f"curl -sf -m 3 -o /dev/null http://{target}:{port}/ready")


def main_pid(host: str, port: int) -> str:
    return sh(host, f"systemctl show -p MainPID --value stet-api@{port}").strip()


def in_recovery(host: str) -> bool | None:
    """Whether PostgreSQL on the host is a standby; None when it does not answer."""
    try:
        return psql(host, "SELECT pg_is_in_recovery()") == "t"
    except (RuntimeError, subprocess.TimeoutExpired):
        return None


def replica_streaming() -> bool:
    streaming = psql(PRIMARY, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
    return streaming not in ("", "0")


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
        if in_recovery(PRIMARY) is not False:
            problems.append(f"{PRIMARY} is not a primary accepting connections")
        if in_recovery(REPLICA) is not True:
            problems.append(f"{REPLICA} is not a replica in recovery")
        elif not replica_streaming():
            problems.append(f"{REPLICA} is not streaming from {PRIMARY}")
        if not pgbouncer_ready(PRIMARY):
            problems.append(f"PgBouncer does not answer on {PRIMARY}")
        for host in API_HOSTS:
            target = database_url_target(host)
            if not target.startswith(address(PRIMARY) + ":"):
                problems.append(f"{host} points at {target}, not PgBouncer on {PRIMARY}")
            for port in API_PORTS:
                if not instance_ready(host, port, via=LB):
                    problems.append(f"{host}:{port} is not ready")
        return problems

    def ensure(self) -> None:
        """Creates and converges the scenario unless it is up and in shape; after a failover
        drill starts the old primary again and rebuilds the promoted replica from it."""
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
        self.topology.inventory = str(self.inventory_file())
        problems = self.shape_problems()
        if problems and in_recovery(PRIMARY) is False and in_recovery(REPLICA) is False:
            # After a failover drill: two primaries. The data tier's playbook rebuilds the promoted
            # one as a replica of the first (its test data is discarded) and points PgBouncer's
            # clients back at the first; much faster than a whole converge.
            log.info("not in shape: %s", "; ".join(problems))
            log.info("rebuilding %s as a replica of %s (playbooks/database.yml)", REPLICA, PRIMARY)
            output = REPORT_DIR / "reset-database.log"
            result = self.playbook("database.yml", output, 1800, "-e", "postgresql_replica_rebuild=true")
            if result != 0:
                log.warning("playbooks/database.yml failed (exit %s), see %s", result, output)
            self.restart_stale_instances()
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
    acknowledged with what `drill.database` holds. The figures go to the session's table;
    `assert_held()` fails the test on a lost correction, a component or service that never
    came back, or a failed check of the drill's own (`drill.check`)."""

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
        self.database = PRIMARY
        self.checks: list[str] = []
        self.notes: list[str] = []
        self.result: dict = {
            "drill": number,
            "name": name,
            "fault": fault,
            "has_component": self.has_component,
        }
        results.append(self.result)

    def check(self, ok: bool, problem: str) -> None:
        if not ok:
            log.warning("drill %s %s: %s", self.number, self.name, problem)
            self.checks.append(problem)

    def note(self, text: str) -> None:
        log.info("drill %s %s: %s", self.number, self.name, text)
        self.notes.append(text)

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
        self.result.update(problems=self.checks, notes=self.notes, seconds=round(time.monotonic() - started))
        figures = {k: v for k, v in self.result.items() if k not in ("corrections", "statuses")}
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
        if after is not None and fault_at is not None:
            after(requests, fault_at)
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


def table(results: list[dict]) -> str:
    head = (
        "drill",
        "sent",
        "failed",
        "429",
        "service back s",
        "component back s",
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
        component = seconds_cell(r.get("component_s"), applies=r["has_component"])
        rows.append(
            (
                f"{r['drill']} {r['name']}",
                str(r.get("sent", "-")),
                str(r.get("failed", "-")),
                str(r.get("rate_limited", "-")),
                service,
                component,
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
