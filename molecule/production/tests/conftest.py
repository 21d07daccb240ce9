"""Helpers of the production scenario's tests: the topology's hosts, HTTPS requests through
the load balancer (molecule/shared/e2e.py), a load generator on the client host, the
releases the API hosts run, and the figures of each operation under load."""

from __future__ import annotations

import os
import pathlib
import shutil
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))
from e2e import Load, Topology
from monitor import Monitor

API_HOSTS = ["stet-prod-api1", "stet-prod-api2"]
# Hardened but in no tier until tests/test_3_scale.py adds it to stet_api with scale.yml.
NEW_HOST = "stet-prod-api3"
# stet_version of inventories/production/group_vars/all.yml: what site.yml installs.
INITIAL_VERSION = "v1.2.1"
# The next release: the same sources plus an expand migration (older code runs on it).
NEXT = "v1.3.0-test"
# The API sources site.yml builds releases from (container.yml: STET_API_SOURCE_DIR or api/).
REPO_SITE = pathlib.Path(__file__).resolve().parents[3] / "site.yml"
SOURCE_DIR = pathlib.Path(
    os.environ.get("STET_API_SOURCE_DIR") or pathlib.Path(__file__).resolve().parents[3] / "api"
)
# The schema INITIAL_VERSION's code expects, and the one NEXT adds (an expand migration).
INITIAL_SCHEMA = max(int(path.name[:3]) for path in (SOURCE_DIR / "migrations").glob("[0-9]*.sql"))
NEXT_SCHEMA = INITIAL_SCHEMA + 1
NEXT_MIGRATION = f"{NEXT_SCHEMA:03d}_release_notes"
# Requests come from the ACME host: a client outside the load balancer and the API hosts.
TOPOLOGY = Topology(site="stet-prod-lb", client="stet-prod-acme", token_host=API_HOSTS[0])
CLIENT = TOPOLOGY.client
LB_URL = TOPOLOGY.url
host, run_ok, api, playbook = TOPOLOGY.host, TOPOLOGY.run_ok, TOPOLOGY.api, TOPOLOGY.playbook
# Prometheus and Alertmanager: the first API host is also the monitoring host (stet_monitor).
MONITOR = Monitor(API_HOSTS[0], run_ok)


@pytest.fixture(scope="session")
def client():
    return TOPOLOGY.prepare_client()


PRIMARY = "stet-prod-db1"
# Each operation's figures under load, printed at the end of the session (pytest_terminal_summary).
STEPS: list[dict] = []


@pytest.fixture(scope="session")
def next_source(tmp_path_factory) -> pathlib.Path:
    """The sources of NEXT: SOURCE_DIR plus NEXT_MIGRATION, which declares that older code still
    runs on it (an expand step: a new table)."""
    target = tmp_path_factory.mktemp("next") / "api"
    shutil.copytree(SOURCE_DIR, target, ignore=shutil.ignore_patterns("tests", "__pycache__", "*.egg-info"))
    (target / "migrations" / f"{NEXT_MIGRATION}.sql").write_text(
        f"-- {NEXT_MIGRATION}: a test release's expand step; older code still runs on it.\n"
        "CREATE TABLE IF NOT EXISTS release_notes (id bigserial PRIMARY KEY, note text NOT NULL);\n"
        f"INSERT INTO schema_window (migration, older_code_runs) VALUES ({NEXT_SCHEMA}, true)\n"
        "ON CONFLICT (migration) DO NOTHING;\n"
    )
    return target


def step(name: str, traffic: Load, min_reads: int, min_writes: int) -> None:
    """An operation that ran under `traffic`: nothing failed, every acknowledged write is
    stored; its figures are kept for the summary."""
    summary = traffic.stop()
    record(name, summary, traffic.corrections_check(PRIMARY))
    traffic.assert_nothing_failed_or_lost(PRIMARY, min_reads=min_reads, min_writes=min_writes)
    # The load ran until the operation ended, not out of time before it.
    assert summary["stopped_by"] == "stop_file", summary


def record(name: str, summary: dict, check: dict) -> None:
    """An operation's figures for the summary: the load's counts and its writes' check."""
    STEPS.append(
        {
            "step": name,
            "sent": summary["sent"],
            "failed": summary["failed"],
            "writes_sent": summary["writes"]["sent"],
            "acked": check["acknowledged"],
            "stored": check["stored"],
            "seconds": summary["seconds"],
        }
    )


def pytest_terminal_summary(terminalreporter):
    if STEPS:
        terminalreporter.section("operations under load (reads + writes through the load balancer)")
        terminalreporter.write_line(
            f"{'step':44} {'sent':>6} {'failed':>6} {'writes':>6} {'acked':>6} {'stored':>6} {'s':>6}"
        )
        for row in STEPS:
            terminalreporter.write_line(
                f"{row['step']:44} {row['sent']:>6} {row['failed']:>6} {row['writes_sent']:>6}"
                f" {row['acked']:>6} {row['stored']:>6} {row['seconds']:>6}"
            )


def load(rate: float = 10, write_rate: float = 1, max_seconds: int = 1800) -> Load:
    """Reads and writes through the load balancer from the client host (molecule/shared/e2e.py).
    10 reads/s resolve an outage to 0.1 s; each read is a new TLS connection, and 20/s cost
    CI a fifth of a core for as long as a test ran."""
    return Load(TOPOLOGY, rate=rate, write_rate=write_rate, max_seconds=max_seconds)


def release_of(name: str) -> dict:
    """The release a host's `current` link names and the STET_VERSION each instance runs with."""
    current = current_release(name)
    running = {}
    for port, pid in zip((8000, 8001), main_pids(name), strict=True):
        environ = run_ok(name, f"tr '\\0' '\\n' < /proc/{pid}/environ")
        running[port] = next(
            line.split("=", 1)[1] for line in environ.splitlines() if line.startswith("STET_VERSION=")
        )
    return {"current": current, "running": running}


def current_release(name: str) -> str:
    """The release a host's `current` link names (what its instances start from)."""
    return run_ok(name, "readlink /opt/stet/current").strip().rsplit("/", 1)[-1]


def on_release(version: str) -> dict:
    """release_of() for a host whose link and both instances are on one release."""
    return {"current": version, "running": {8000: version, 8001: version}}


def main_pids(name: str) -> list[str]:
    """Main PIDs of a host's instances: unchanged PIDs mean the instances were not restarted."""
    return [
        run_ok(name, f"systemctl show -p MainPID --value stet-api@{port}").strip() for port in (8000, 8001)
    ]


def link(name: str, which: str) -> str | None:
    """The release a host's link (current, last-good, previous) names; None without the link."""
    target = TOPOLOGY.sh(name, f"readlink /opt/stet/{which} || true").strip()
    return target.rsplit("/", 1)[-1] if target else None


def manifest_sha(name: str, release: str) -> str:
    """sha256 of a host's MANIFEST of a release (the sha256 of every file of the artifact)."""
    return run_ok(name, f"sha256sum /opt/stet/releases/{release}/MANIFEST").split()[0]


def assert_same_manifest(release: str, hosts: list[str]) -> str:
    """Every host holds the release with one manifest; its sha256."""
    shas = {name: manifest_sha(name, release) for name in hosts}
    print(f"manifest {release}:", shas)
    assert len(set(shas.values())) == 1, shas
    return next(iter(shas.values()))


def applied_schema() -> int:
    return int(TOPOLOGY.psql(PRIMARY, "SELECT max(version) FROM schema_migrations"))


def drained_hosts() -> list[str]:
    """Addresses of the API hosts the load balancer has drained (their drain state links to
    <address>.down.conf), as nginx loads them."""
    links = run_ok(
        "stet-prod-lb", "find /etc/nginx/stet-upstream/active -lname '*.down.conf' -printf '%f\\n'"
    )
    return sorted(line.removesuffix(".conf") for line in links.split())


def address_of(name: str) -> str:
    return run_ok(name, "hostname -i").split()[0]


def changed_tasks(output: str) -> list[str]:
    """Every change a playbook's output reports, as "<task>: <changed line>"."""
    task, changes = "", []
    for line in output.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line.split("[", 1)[1].split("]", 1)[0]
        elif line.startswith("changed: ["):
            changes.append(f"{task}: {line}")
    return changes


def recap_changed(output: str) -> dict[str, int]:
    """changed= of every host in a playbook's PLAY RECAP."""
    recap = output[output.rindex("PLAY RECAP") :]
    return {
        line.split()[0]: int(line.split("changed=")[1].split()[0])
        for line in recap.splitlines()
        if "changed=" in line
    }


def assert_nothing_changed(output: str, hosts: list[str]) -> None:
    """The playbook ran on every one of `hosts` and reported changed=0 on every host."""
    changed = recap_changed(output)
    print("changed:", changed)
    assert set(hosts) <= set(changed)
    assert changed == dict.fromkeys(changed, 0), (changed, changed_tasks(output))
