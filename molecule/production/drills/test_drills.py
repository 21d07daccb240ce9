"""Failure drills under load on the production topology, one fault at a time, while reads
and writes go through the load balancer over HTTPS (`make drills`, or
`make drills DRILLS=1,3`, which selects `-k "drill_1 or drill_3"`):

    1 api-instance   SIGKILL the gunicorn master of stet-api@8000 on api1 (systemd restarts it)
    2 api-host       docker stop api1, 20 s down, docker start; until nginx sends it requests
    3 postgresql     restart PostgreSQL on the primary
    4 pgbouncer      restart PgBouncer
    5 disk-full      a full 64 MB tmpfs over the backup directory: the backup job must fail
                     loudly while reads go on; the directory is then exactly as it was
    6 failover       docker stop the primary, playbooks/failover.yml promotes the replica
                     (destructive: last; the next run rebuilds the topology first)
    7 rebuild        both database hosts removed with their disks; fresh hosts of the same
                     names, site.yml (stopped by the repository's guard), restore.yml from
                     the pgBackRest repository, site.yml again (destructive)

Each test fails when an acknowledged correction is missing from the database (drill 7: one
acknowledged earlier than the archive lag before the loss), the component
or the service never came back within the drill's bounds, or the drill's own check failed;
never because recovery was slow. The figures are printed at the end (conftest.py).
"""

from __future__ import annotations

import json
import re
import time

import pytest
from conftest import (
    API1,
    API2,
    API_HOSTS,
    API_PORTS,
    LB,
    PRIMARY,
    REPLICA,
    REPO,
    REPORT_DIR,
    address,
    docker,
    in_recovery,
    instance_ready,
    main_pid,
    pgbouncer_ready,
    psql,
    replica_streaming,
    sh,
    since,
    wait_until,
)
from e2e import back_after, is_failure

PG_SERVICE = "postgresql@15-main"
BACKUP_SCRIPT = "/opt/stet/scripts/backup-database.sh"
BACKUP_DIR = "/var/backups/stet"
BACKUP_LOG = "/var/log/stet/db-maintenance.log"
NGINX_ACCESS_LOG = "/var/log/nginx/stet_access.log"
FAILOVER_TIMEOUT = 780  # within the failover load's 900 s
PGBACKREST_BACKUP_JOB = "/opt/stet/scripts/pgbackrest-backup.sh"
# archive_timeout (postgresql_archive_timeout) plus the asynchronous push's own delay.
ARCHIVE_LAG_SECONDS = 75
REPOSITORY_GUARD = "a new, empty cluster"


def writes_back_noted(d):
    """An `after` check for Drill.run that notes when writes succeeded again after the fault."""

    def after(requests, fault_at):
        write_s, _ = back_after([r for r in requests if r["kind"] == "write"], fault_at)
        d.note(f"writes succeed again after {write_s} s")

    return after


def test_drill_1_api_instance(production, drill):
    """SIGKILL to a gunicorn master: systemd starts a new one and it answers /ready."""
    d = drill(1, "api-instance", f"SIGKILL to the gunicorn master of stet-api@8000 on {API1}")

    def fault():
        old = main_pid(API1, 8000)
        if old in ("", "0"):
            raise RuntimeError(f"stet-api@8000 on {API1} is not running")
        fault_at = time.time()
        sh(API1, f"kill -KILL {old}")
        healthy = wait_until(
            lambda: main_pid(API1, 8000) not in ("", "0", old) and instance_ready(API1, 8000), 120
        )
        return fault_at, since(fault_at, healthy)

    d.run(fault)
    d.assert_held()


def test_drill_2_api_host(production, drill):
    """A whole API host stopped for 20 s and started again: nginx sends it requests again."""
    d = drill(2, "api-host", f"docker stop {API1}, 20 s down, docker start; until nginx sends it requests")

    def served_by(host_address: str, offset: int) -> bool:
        """nginx passed a request to the host and got a 2xx answer (its access log after offset)."""
        text = sh(LB, f"tail -c +{offset + 1} {NGINX_ACCESS_LOG}", timeout=30)
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            upstream = entry.get("upstream_addr", "").split(",")[-1].strip()
            status = entry.get("upstream_status", "").split(",")[-1].strip()
            if upstream.startswith(host_address + ":") and status.startswith("2"):
                return True
        return False

    def fault():
        before = address(API1)
        fault_at = time.time()
        docker("stop", API1, timeout=120)
        time.sleep(20)
        log_offset = int(sh(LB, f"stat -c %s {NGINX_ACCESS_LOG}").strip())
        started_at = time.monotonic()
        docker("start", API1, timeout=120)
        after = address(API1)
        if after != before:
            d.note(f"{API1} came back as {after} (was {before}); nginx knows {before}")
        ready = wait_until(lambda: all(instance_ready(API1, port, via=LB) for port in API_PORTS), 240, 1)
        if ready is None:
            return fault_at, None
        served = wait_until(lambda: served_by(after, log_offset), 120, 1)
        d.note("component back s counted from docker start")
        return fault_at, None if served is None else round(time.monotonic() - started_at, 1)

    def cleanup():
        docker("start", API1, timeout=120, check=False)

    d.run(fault, cleanup)
    d.assert_held()


def test_drill_3_postgresql(production, drill):
    """PostgreSQL restarted on the primary: it accepts connections and the replica streams again."""
    d = drill(3, "postgresql", f"systemctl restart {PG_SERVICE} on {PRIMARY}")

    def fault():
        fault_at = time.time()
        sh(PRIMARY, f"systemctl restart {PG_SERVICE}", timeout=180)
        healthy = wait_until(lambda: in_recovery(PRIMARY) is False and replica_streaming(), 180)
        return fault_at, since(fault_at, healthy)

    d.run(fault)
    d.assert_held()


def test_drill_4_pgbouncer(production, drill):
    """PgBouncer restarted: it answers on 6432 again."""
    d = drill(4, "pgbouncer", f"systemctl restart pgbouncer on {PRIMARY}")

    def fault():
        fault_at = time.time()
        sh(PRIMARY, "systemctl restart pgbouncer", timeout=120)
        healthy = wait_until(lambda: pgbouncer_ready(PRIMARY), 120)
        return fault_at, since(fault_at, healthy)

    d.run(fault)
    d.assert_held()


def test_drill_5_disk_full(production, drill):
    """The backup on a full disk fails loudly (non-zero, a `status=failed` line in its log),
    reads never fail meanwhile, and the backup directory is afterwards exactly as before."""
    d = drill(
        5,
        "disk-full",
        f"full 64 MB tmpfs over {BACKUP_DIR} on {PRIMARY}, then {BACKUP_SCRIPT}",
        has_component=False,
    )
    source = "stet-drill-full"
    # Every entry of the backup directory with size, time, mode and owner, links resolved.
    fingerprint = f"find {BACKUP_DIR} -printf '%P %s %T@ %m %u:%g %l\\n' | sort | md5sum"
    state = {"mounted": False}

    def unmount():
        if state["mounted"]:
            sh(PRIMARY, f"rm -f {BACKUP_DIR}/.drill-fill; umount {BACKUP_DIR}", check=False)
            still = sh(PRIMARY, f"findmnt -n --mountpoint {BACKUP_DIR} || true").strip()
            d.check(not still, f"{BACKUP_DIR} is still mounted: {still}")
            state["mounted"] = bool(still)

    def fault():
        mounted = sh(PRIMARY, f"findmnt -n -o SOURCE --mountpoint {BACKUP_DIR} || true").strip()
        if mounted == source:
            d.note(f"unmounted the tmpfs an interrupted drill left on {BACKUP_DIR}")
            sh(PRIMARY, f"umount {BACKUP_DIR}")
        elif mounted:
            raise RuntimeError(f"something is already mounted on {BACKUP_DIR}: {mounted}")
        before = sh(PRIMARY, fingerprint).strip()
        mode, uid, gid = sh(PRIMARY, f"stat -c '%a %u %g' {BACKUP_DIR}").split()
        log_lines = int(sh(PRIMARY, f"wc -l < {BACKUP_LOG} 2>/dev/null || echo 0").strip() or 0)
        fault_at = time.time()
        sh(PRIMARY, f"mount -t tmpfs -o size=64m,mode={mode},uid={uid},gid={gid} {source} {BACKUP_DIR}")
        state["mounted"] = True
        # dd stops at ENOSPC: the file system is full to the last block.
        sh(PRIMARY, f"dd if=/dev/zero of={BACKUP_DIR}/.drill-fill bs=1M status=none || true", timeout=120)
        available = sh(PRIMARY, f"df --output=avail -B1 {BACKUP_DIR} | tail -1").strip()
        d.note(f"bytes free before the backup: {available}")
        job = docker("exec", PRIMARY, BACKUP_SCRIPT, timeout=300, check=False)
        new_log = sh(PRIMARY, f"tail -n +{log_lines + 1} {BACKUP_LOG}").strip()
        d.note(f"backup exit {job.returncode}; log: {new_log or '(nothing)'}")
        d.check(job.returncode != 0, "the backup reported success on a full disk")
        d.check(
            re.search(r"job=backup status=failed", new_log) is not None,
            f"no 'job=backup status=failed' line in {BACKUP_LOG}",
        )
        unmount()
        d.check(sh(PRIMARY, fingerprint).strip() == before, f"{BACKUP_DIR} differs from before the drill")
        return fault_at, None

    def reads_went_on(requests, fault_at):
        reads = [r for r in requests if r["kind"] == "read" and r["finished"] >= fault_at]
        failed = [r for r in reads if is_failure(r["status"])]
        d.check(not failed, f"{len(failed)} of {len(reads)} reads failed while the disk was full")

    d.run(fault, cleanup=unmount, after=reads_went_on)
    d.assert_held()


@pytest.mark.destructive
def test_drill_6_failover(production, drill):
    """The primary lost: playbooks/failover.yml promotes the replica and every API instance
    answers /ready. Destructive, so last: the next run rebuilds the replica first."""
    d = drill(
        6,
        "failover",
        f"docker stop {PRIMARY}; playbooks/failover.yml promotes {REPLICA}",
        max_seconds=900,
    )

    def fault():
        if in_recovery(REPLICA) is not True or not replica_streaming():
            raise RuntimeError(f"{REPLICA} is not a streaming replica: no failover to drill")
        output = REPORT_DIR / f"{d.tag}-failover.log"
        fault_at = time.time()
        docker("stop", PRIMARY, timeout=120)
        d.note(f"{PRIMARY} stopped; running playbooks/failover.yml (log {output})")
        returncode = production.playbook("failover.yml", output, FAILOVER_TIMEOUT)
        d.note(f"failover.yml exit {returncode} in {round(time.time() - fault_at)} s")
        # Acknowledged corrections are looked for where the service writes now.
        d.database = REPLICA
        if returncode != 0:
            print(output.read_text()[-4000:])
            return fault_at, None
        healthy = wait_until(
            lambda: (
                in_recovery(REPLICA) is False
                and all(instance_ready(host, port, via=LB) for host in API_HOSTS for port in API_PORTS)
            ),
            120,
        )
        return fault_at, since(fault_at, healthy)

    d.run(fault, after=writes_back_noted(d))
    d.assert_held()


@pytest.mark.destructive
def test_drill_7_database_hosts_rebuilt(production, drill):
    """Every database host lost with its disk. Fresh hosts of the same names; site.yml must stop
    at the repository's guard before any API host migrates the new, empty cluster; restore.yml
    brings the data back from the pgBackRest repository on the API host; site.yml again. Writes
    acknowledged within the archive lag before the loss may be lost, no earlier one."""
    production.ensure()  # in shape first (after the failover drill: the replica rebuilt)
    if not json.loads(sh(API2, "runuser -u postgres -- pgbackrest --stanza=stet --output=json info"))[0][
        "backup"
    ]:
        sh(API2, f"{PGBACKREST_BACKUP_JOB} full", timeout=600)
    d = drill(
        7,
        "rebuild",
        f"docker rm -f {PRIMARY} {REPLICA}; fresh hosts; site.yml, restore.yml, site.yml",
        max_seconds=1800,  # loadgen's longest run
        loss_window=ARCHIVE_LAG_SECONDS,
    )

    def playbook(step: str, path, timeout: int, *extra: str) -> tuple[int, str]:
        output = REPORT_DIR / f"{d.tag}-{step}.log"
        started = time.time()
        returncode = production.playbook(path, output, timeout, *extra)
        d.note(f"{step}: exit {returncode} in {round(time.time() - started)} s (log {output})")
        return returncode, output.read_text()

    def fault():
        fault_at = time.time()
        docker("rm", "--force", PRIMARY, REPLICA, timeout=120)
        d.note(f"{PRIMARY} and {REPLICA} removed")
        production.recreate(PRIMARY, REPLICA)
        d.note(f"fresh {PRIMARY} and {REPLICA} after {round(time.time() - fault_at)} s")
        returncode, output = playbook("site-1", REPO / "site.yml", 1800)
        d.check(
            returncode != 0 and REPOSITORY_GUARD in output,
            "site.yml was not stopped by the repository's guard",
        )
        migrated = psql(PRIMARY, "SELECT count(*) FROM pg_tables WHERE tablename = 'corrections'", timeout=60)
        d.check(migrated == "0", "an API host migrated the new, empty cluster before the restore")
        returncode, _ = playbook(
            "restore", "restore.yml", 1800, "-e", "restore_confirm=yes", "-e", "restore_safety_backup=false"
        )
        d.check(returncode == 0, "restore.yml failed")
        returncode, _ = playbook("site-2", REPO / "site.yml", 1800)
        # No restart from here: the stet_api role restarts instances still on the old URL.
        d.check(returncode == 0, "site.yml after the restore failed")
        healthy = wait_until(lambda: not production.shape_problems(), 300, 5)
        return fault_at, since(fault_at, healthy)

    d.run(fault, after=writes_back_noted(d))
    d.assert_held()
