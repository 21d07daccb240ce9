"""Failure drills under load on the production topology, one fault at a time, while reads
and writes go through the load balancer over HTTPS (`make drills`, or
`make drills DRILLS=1,3`, which selects `-k "drill_1 or drill_3"`). Patroni runs PostgreSQL
(issue 16): the leader moves, so "the leader" is asked of patronictl when a drill starts.

     1 api-instance   SIGKILL the main process of stet-api@8000 on api1 (systemd restarts it)
     2 api-host       docker stop api1, 20 s down, docker start; until nginx sends it requests
     3 postgresql     SIGKILL the leader's postmaster (Patroni restarts it, or fails over)
     4 pgbouncer      restart PgBouncer on the leader
     5 disk-full      a full 64 MB tmpfs over the leader's backup directory: the backup job must
                      fail loudly while reads go on; the directory is then exactly as it was
     6 leader-host    docker stop the leader: Patroni promotes the standby, no playbook;
                      docker start, and the old leader rejoins as a standby by itself
     8 network-cut    the leader cut off from the network (iptables; docker exec still reaches
                      it): a new leader, no write accepted by the old one; rules removed, rejoin
     9 standby-lost   docker stop the standby: the leader keeps serving; pg_wal and the slot
                      watched for 60 s; docker start, rejoin
    10 etcd-member    systemctl stop etcd on api1 (a member that is no database host): nothing
                      changes, no request fails
    11 switchover     playbooks/switchover.yml, a planned change of leader
    12 ca-rotation    playbooks/rotate-ca.yml, a new key for the platform CA: no request may
                      fail; every certificate signed by the new CA, which every host trusts alone
    13 rolling-upgrade playbooks/upgrade-database.yml restarting every member: the standby,
                      a switchover, the old leader; both restarted, packages held again
    14 restart-setting database.yml changing shared_buffers: the standby restarted first,
                      then a switchover; then back to the old value the same way
     7 rebuild        both database hosts removed with their disks; fresh hosts of the same
                      names, site.yml (stopped before Patroni starts on them), restore.yml from
                      the pgBackRest repository, site.yml again (destructive: last)

Each test fails when an acknowledged correction is missing from the leader (drill 7: one
acknowledged earlier than the archive lag before the loss), the component or the service
never came back within the drill's bounds, a node no longer leader kept a write the new
leader lacks, an old leader or standby did not rejoin, or the drill's own check failed;
never because recovery was slow. The figures are printed at the end (conftest.py).
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest
from conftest import (
    API1,
    API2,
    API_HOSTS,
    API_PORTS,
    DB_HOSTS,
    LB,
    REPO,
    REPORT_DIR,
    address,
    cluster_healthy,
    cut_network,
    docker,
    etcd_healthy,
    heal_network_cut,
    instance_ready,
    leader,
    main_pid,
    members_text,
    pgbouncer_ready,
    psql,
    sh,
    since,
    standby,
    succeeds,
    wait_until,
)
from e2e import is_failure

PGDATA = "/var/lib/postgresql/15/main"
BACKUP_SCRIPT = "/opt/stet/scripts/backup-database.sh"
BACKUP_DIR = "/var/backups/stet"
BACKUP_LOG = "/var/log/stet/db-maintenance.log"
NGINX_ACCESS_LOG = "/var/log/nginx/stet_access.log"
# Patroni: ttl 20 s, loop_wait 5 s, retry_timeout 5 s. A new leader well within this.
FAILOVER_TIMEOUT = 120
SWITCHOVER_TIMEOUT = 600
# Longer than Patroni's ttl: a leader that could not renew its key would have lost it by then.
ETCD_DOWN_SECONDS = 30
WAL_WATCH_SECONDS = 60
PGBACKREST_BACKUP_JOB = "/opt/stet/scripts/pgbackrest-backup.sh"
# archive_timeout (postgresql_archive_timeout) plus the asynchronous push's own delay.
ARCHIVE_LAG_SECONDS = 75
# How site.yml refuses to run a new, empty cluster where the repository (pgbackrest role) or
# etcd (patroni role) knows the lost one; both name restore.yml.
NEW_CLUSTER_REFUSED = "a new, empty cluster"


def every_instance_ready() -> bool:
    return all(instance_ready(host, port, via=LB) for host in API_HOSTS for port in API_PORTS)


def in_sync_pair(d) -> tuple[str, str]:
    """The drill's leader and its standby, when the cluster is healthy; a drill that moves the
    leader has nothing to drill otherwise."""
    other = standby()
    if d.database is None or other is None or not cluster_healthy():
        raise RuntimeError(f"no leader with a streaming sync standby: {members_text()}")
    return d.database, other


def test_drill_1_api_instance(production, drill):
    """SIGKILL to an instance's main process: systemd starts a new one and it answers /ready."""
    d = drill(1, "api-instance", f"SIGKILL to the main process of stet-api@8000 on {API1}")

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
    """The leader's postmaster SIGKILLed: Patroni starts PostgreSQL again (or, should it not
    come back within the ttl, promotes the standby) and the cluster has a sync standby again."""
    d = drill(3, "postgresql", "SIGKILL to the leader's postmaster")

    def fault():
        old, _ = in_sync_pair(d)
        pid = sh(old, f"head -1 {PGDATA}/postmaster.pid").strip()
        d.note(f"postmaster {pid} on {old}")
        fault_at = time.time()
        sh(old, f"kill -KILL {pid}")
        healthy = wait_until(
            lambda: sh(old, f"head -1 {PGDATA}/postmaster.pid").strip() != pid and cluster_healthy(), 180
        )
        new = d.follow_leader()
        if new is None or new == old:
            d.note(f"the leader stayed {old}: Patroni restarted PostgreSQL in place")
        else:
            # Counted after the rejoin: a rewind may already have discarded what diverged.
            d.count_split_brain(old, new)
            d.result.update(rejoined=healthy is not None, rejoined_s=since(fault_at, healthy))
        return fault_at, since(fault_at, healthy)

    d.run(fault)
    d.assert_held()


def test_drill_4_pgbouncer(production, drill):
    """PgBouncer restarted on the leader: it answers on 6432 again."""
    d = drill(4, "pgbouncer", "systemctl restart pgbouncer on the leader")

    def fault():
        host = d.database
        fault_at = time.time()
        sh(host, "systemctl restart pgbouncer", timeout=120)
        healthy = wait_until(lambda: pgbouncer_ready(host), 120)
        return fault_at, since(fault_at, healthy)

    d.run(fault)
    d.assert_held()


def test_drill_5_disk_full(production, drill):
    """The backup on a full disk fails loudly (non-zero, a `status=failed` line in its log),
    reads never fail meanwhile, and the backup directory is afterwards exactly as before."""
    d = drill(
        5,
        "disk-full",
        f"full 64 MB tmpfs over {BACKUP_DIR} on the leader, then {BACKUP_SCRIPT}",
        has_component=False,
    )
    host = d.database
    source = "stet-drill-full"
    # Every entry of the backup directory with size, time, mode and owner, links resolved.
    fingerprint = f"find {BACKUP_DIR} -printf '%P %s %T@ %m %u:%g %l\\n' | sort | md5sum"
    state = {"mounted": False}

    def unmount():
        if state["mounted"]:
            sh(host, f"rm -f {BACKUP_DIR}/.drill-fill; umount {BACKUP_DIR}", check=False)
            still = sh(host, f"findmnt -n --mountpoint {BACKUP_DIR} || true").strip()
            d.check(not still, f"{BACKUP_DIR} is still mounted: {still}")
            state["mounted"] = bool(still)

    def fault():
        if not sh(host, f"test -x {BACKUP_SCRIPT} && echo yes || true").strip():
            # The backup role runs on the leader at converge: after a change of leader the
            # job is missing from the new one until the next converge.
            raise RuntimeError(f"{BACKUP_SCRIPT} is not on the leader {host}")
        mounted = sh(host, f"findmnt -n -o SOURCE --mountpoint {BACKUP_DIR} || true").strip()
        if mounted == source:
            d.note(f"unmounted the tmpfs an interrupted drill left on {BACKUP_DIR}")
            sh(host, f"umount {BACKUP_DIR}")
        elif mounted:
            raise RuntimeError(f"something is already mounted on {BACKUP_DIR}: {mounted}")
        before = sh(host, fingerprint).strip()
        mode, uid, gid = sh(host, f"stat -c '%a %u %g' {BACKUP_DIR}").split()
        log_lines = int(sh(host, f"wc -l < {BACKUP_LOG} 2>/dev/null || echo 0").strip() or 0)
        fault_at = time.time()
        sh(host, f"mount -t tmpfs -o size=64m,mode={mode},uid={uid},gid={gid} {source} {BACKUP_DIR}")
        state["mounted"] = True
        # dd stops at ENOSPC: the file system is full to the last block.
        sh(host, f"dd if=/dev/zero of={BACKUP_DIR}/.drill-fill bs=1M status=none || true", timeout=120)
        available = sh(host, f"df --output=avail -B1 {BACKUP_DIR} | tail -1").strip()
        d.note(f"bytes free before the backup: {available}")
        job = docker("exec", host, BACKUP_SCRIPT, timeout=300, check=False)
        new_log = sh(host, f"tail -n +{log_lines + 1} {BACKUP_LOG}").strip()
        d.note(f"backup exit {job.returncode}; log: {new_log or '(nothing)'}")
        d.check(job.returncode != 0, "the backup reported success on a full disk")
        d.check(
            re.search(r"job=backup status=failed", new_log) is not None,
            f"no 'job=backup status=failed' line in {BACKUP_LOG}",
        )
        unmount()
        d.check(sh(host, fingerprint).strip() == before, f"{BACKUP_DIR} differs from before the drill")
        return fault_at, None

    def reads_went_on(requests, fault_at):
        reads = [r for r in requests if r["kind"] == "read" and r["finished"] >= fault_at]
        failed = [r for r in reads if is_failure(r["status"])]
        d.check(not failed, f"{len(failed)} of {len(reads)} reads failed while the disk was full")

    d.run(fault, cleanup=unmount, after=reads_went_on)
    d.assert_held()


def test_drill_6_leader_host(production, drill):
    """The leader's host stopped: Patroni promotes the sync standby by itself (no playbook) and
    HAProxy on the API hosts follows it; started again, the old leader rejoins as a standby."""
    d = drill(6, "leader-host", "docker stop the leader; Patroni promotes the standby", max_seconds=900)
    state: dict = {}

    def fault():
        old, new = in_sync_pair(d)
        fault_at = time.time()
        docker("stop", old, timeout=120)
        state.update(stopped=old, ask=(new, old))
        d.note(f"{old} stopped: a stopped host accepts no write, so no split-brain count")
        promoted = wait_until(lambda: leader(new) == new and every_instance_ready(), FAILOVER_TIMEOUT, 1)
        d.follow_leader(new)
        return fault_at, since(fault_at, promoted)

    def cleanup():
        if "stopped" in state:
            started = time.time()
            docker("start", state["stopped"], timeout=120)
            # Asked on the new leader first: the old one answers only once it has booted.
            d.wait_rejoined(state["stopped"], started, *state["ask"])

    d.run(fault, cleanup)
    d.assert_held()


def test_drill_8_network_cut(production, drill):
    """The leader cut off from every other host: the standby takes over once the leader key
    expires, and the old leader, which can reach neither etcd nor its standby, must keep no
    write the new leader lacks (synchronous_mode; Patroni demotes it). The rules removed, it
    rejoins as a standby, rewound."""
    d = drill(8, "network-cut", "iptables drops all but loopback on the leader", max_seconds=900)
    state: dict = {}

    def fault():
        old, new = in_sync_pair(d)
        fault_at = time.time()
        state["cut"] = old
        cut_network(old)
        # Asked on the standby only: the old leader's patronictl reaches no etcd member.
        promoted = wait_until(lambda: leader(new) == new and every_instance_ready(), FAILOVER_TIMEOUT, 1)
        state["new"] = d.follow_leader(new)
        return fault_at, since(fault_at, promoted)

    def cleanup():
        old = state.get("cut")
        if old is None:
            return
        new = state.get("new")
        if new is not None and new != old:
            d.count_split_brain(old, new)  # still cut off: before any rewind
        healed = time.time()
        heal_network_cut(old)
        d.wait_rejoined(old, healed, *(host for host in (new, old) if host is not None))

    d.run(fault, cleanup)
    d.assert_held()


def test_drill_9_standby_lost(production, drill):
    """The standby's host stopped: the leader keeps serving (the failed requests are recorded),
    its slot holds WAL for the standby meanwhile (pg_wal's size and the slot's wal_status
    recorded over 60 s); started again, the standby rejoins by itself."""
    d = drill(
        9,
        "standby-lost",
        f"docker stop the standby, {WAL_WATCH_SECONDS} s",
        has_component=False,
        max_seconds=900,
    )
    wal_bytes = f"du -sb {PGDATA}/pg_wal | cut -f1"
    slots = "SELECT slot_name || ' ' || active || ' ' || coalesce(wal_status, '-') FROM pg_replication_slots"
    state: dict = {}

    def fault():
        current, lost = in_sync_pair(d)
        before = int(sh(current, wal_bytes).strip())
        fault_at = time.time()
        docker("stop", lost, timeout=120)
        state.update(stopped=lost, ask=(current, lost))
        time.sleep(WAL_WATCH_SECONDS)
        after = int(sh(current, wal_bytes).strip())
        slot_state = psql(current, slots).replace("\n", "; ") or "no slot"
        d.result.update(pg_wal_bytes_before=before, pg_wal_bytes_after=after, slots=slot_state)
        d.note(
            f"pg_wal on {current}: {before} bytes, {after} after {WAL_WATCH_SECONDS} s; slots: {slot_state}"
        )
        now = leader(current)
        if now != current:
            d.note(f"the leader changed from {current} to {now} while the standby was away")
        return fault_at, None

    def cleanup():
        if "stopped" in state:
            started = time.time()
            docker("start", state["stopped"], timeout=120)
            d.wait_rejoined(state["stopped"], started, *state["ask"])

    d.run(fault, cleanup)
    d.assert_held()


def test_drill_10_etcd_member(production, drill):
    """One etcd member of three stopped (on api1, no database host): etcd keeps its quorum, so
    Patroni renews the leader key as before. The leader must not change and no request fail."""
    d = drill(10, "etcd-member", f"systemctl stop etcd on {API1}, {ETCD_DOWN_SECONDS} s")
    state: dict = {}

    def fault():
        before = d.database
        fault_at = time.time()
        sh(API1, "systemctl stop etcd", timeout=120)
        state["stopped"] = True
        time.sleep(ETCD_DOWN_SECONDS)
        now = leader()
        d.check(now == before, f"the leader changed from {before} to {now} with one etcd member down")
        d.check(cluster_healthy(), f"the cluster changed with one etcd member down: {members_text()}")
        sh(API1, "systemctl start etcd", timeout=120)
        healthy = wait_until(etcd_healthy, 120, 2)
        return fault_at, since(fault_at, healthy)

    def cleanup():
        if state.get("stopped"):
            sh(API1, "systemctl start etcd", timeout=120)

    def nothing_failed(requests, fault_at):
        failed = [r for r in requests if r["finished"] >= fault_at and is_failure(r["status"])]
        d.check(not failed, f"{len(failed)} requests failed with one etcd member down")

    d.run(fault, cleanup, after=nothing_failed)
    d.assert_held()


def run_playbook(production, d, name: str, timeout: int, *extra: str, step: str = "") -> float:
    """playbooks/<name> for drill `d`, its output to a file beside the report (named after
    `step` when the drill runs the playbook more than once); the exit status and duration
    noted, a failure checked. Returns the moment it started (epoch seconds)."""
    output = REPORT_DIR / f"{d.tag}-{step or name.removesuffix('.yml')}.log"
    started = time.time()
    returncode = production.playbook(name, output, timeout, *extra)
    d.note(f"{name} exit {returncode} in {round(time.time() - started)} s (log {output})")
    d.check(returncode == 0, f"{name} failed")
    if returncode != 0:
        print(output.read_text()[-4000:])
    return started


def test_drill_11_switchover(production, drill):
    """A planned change of leader with playbooks/switchover.yml: the standby leads, the old
    leader follows it, and writes fail only for the moment of the switch (recorded)."""
    d = drill(11, "switchover", "playbooks/switchover.yml", max_seconds=900)

    def fault():
        old, candidate = in_sync_pair(d)
        fault_at = run_playbook(production, d, "switchover.yml", SWITCHOVER_TIMEOUT)
        switched = wait_until(lambda: leader() == candidate and every_instance_ready(), FAILOVER_TIMEOUT, 1)
        new = d.follow_leader()
        if new is not None and new != old:
            d.count_split_brain(old, new)
            d.wait_rejoined(old, fault_at)
        return fault_at, since(fault_at, switched)

    d.run(fault)
    d.assert_held()


PKI_DIR = "/etc/ssl/stet-pki"
CA_ROTATION_TIMEOUT = 1200


def certificates_signed_by(host: str, ca_file: str) -> dict[str, bool]:
    """Each certificate of `host` in the pki directory: whether it verifies against `ca_file`."""
    names = sh(host, f"ls {PKI_DIR}").split()
    return {
        name: succeeds(host, f"openssl verify -CAfile {ca_file} {PKI_DIR}/{name}")
        for name in names
        if name.endswith(".crt") and name != "ca.crt"
    }


def test_drill_12_ca_rotation(production, drill):
    """playbooks/rotate-ca.yml: a new CA key while the load runs. At each of its steps every
    host trusts the CA of every certificate it may be shown, so no request may fail; after it,
    every host trusts the new CA alone and every certificate (etcd, PostgreSQL and Patroni,
    PgBouncer, pgBackRest, the API instances) is signed by it and not by the old one."""
    d = drill(12, "ca-rotation", "playbooks/rotate-ca.yml", max_seconds=1500, has_component=False)
    hosts = (LB, *API_HOSTS, *DB_HOSTS)
    for host in hosts:
        sh(host, f"cp {PKI_DIR}/ca.crt /tmp/old-ca.crt")

    def fault():
        return run_playbook(production, d, "rotate-ca.yml", CA_ROTATION_TIMEOUT), None

    def after(requests, fault_at):
        failed = [r for r in requests if r["finished"] >= fault_at and is_failure(r["status"])]
        d.check(not failed, f"{len(failed)} requests failed during the rotation: {failed[:3]}")
        new_ca = sh(API_HOSTS[0], f"cat {PKI_DIR}/ca.crt")
        for host in hosts:
            d.check(sh(host, f"cat {PKI_DIR}/ca.crt") == new_ca, f"{host} does not trust the new CA alone")
            d.check(sh(host, "cat /tmp/old-ca.crt") != new_ca, f"{host}: the CA did not change")
            signed = certificates_signed_by(host, f"{PKI_DIR}/ca.crt")
            d.check(all(signed.values()), f"{host}: not signed by the new CA: {signed}")
            by_old = [name for name, ok in certificates_signed_by(host, "/tmp/old-ca.crt").items() if ok]
            d.check(not by_old, f"{host}: still signed by the old CA: {by_old}")
        d.check(cluster_healthy() and etcd_healthy(), f"cluster after the rotation: {members_text()}")

    d.run(fault, after=after)
    d.assert_held()


UPGRADE_TIMEOUT = 900


def postmaster_started(host: str) -> str:
    return psql(host, "SELECT pg_postmaster_start_time()")


def test_drill_13_rolling_upgrade(production, drill):
    """playbooks/upgrade-database.yml with every member restarted (a rolling restart, as when
    packages were upgraded): the standby first, then a switchover, then the old leader.
    Writes fail only around the switchover (recorded); no acknowledged write is lost; both
    members run a new postmaster, the leader moved, and the packages are held again."""
    d = drill(13, "rolling-upgrade", "upgrade-database.yml, every member restarted", max_seconds=1500)

    def fault():
        old, candidate = in_sync_pair(d)
        started = {host: postmaster_started(host) for host in DB_HOSTS}
        restart_every_member = ("-e", "patroni_upgrade_restart_always=true")
        fault_at = run_playbook(production, d, "upgrade-database.yml", UPGRADE_TIMEOUT, *restart_every_member)
        healthy = wait_until(lambda: leader() == candidate and cluster_healthy(), FAILOVER_TIMEOUT, 1)
        new = d.follow_leader()
        if new is not None and new != old:
            d.count_split_brain(old, new)
        for host in DB_HOSTS:
            d.check(postmaster_started(host) != started[host], f"{host}: PostgreSQL was not restarted")
            held = sh(host, "apt-mark showhold").split()
            d.check({"postgresql-15", "pgbouncer"} <= set(held), f"{host}: held {held}")
        return fault_at, since(fault_at, healthy)

    d.run(fault)
    d.assert_held()


def shared_buffers(host: str) -> str:
    return psql(host, "SHOW shared_buffers")


def test_drill_14_restart_setting(production, drill):
    """A setting only a restart applies (shared_buffers), changed by playbooks/database.yml:
    the standby restarts first, in place, then the leader hands over to it and restarts as a
    standby, so writes pause for a switchover only. Then the same playbook without the change
    puts the old value back the same way (the leader moves back). Both members run each value,
    none waits for a restart, no acknowledged write is lost."""
    d = drill(
        14,
        "restart-setting",
        "database.yml -e postgresql_shared_buffers=..., then without it",
        max_seconds=1500,
    )

    def fault():
        old, candidate = in_sync_pair(d)
        before = shared_buffers(old)
        changed = "144MB" if before != "144MB" else "136MB"
        started = {host: postmaster_started(host) for host in DB_HOSTS}
        fault_at = run_playbook(
            production,
            d,
            "database.yml",
            UPGRADE_TIMEOUT,
            "-e",
            f"postgresql_shared_buffers={changed}",
            step="database-changed",
        )
        moved = wait_until(lambda: leader() == candidate and cluster_healthy(), FAILOVER_TIMEOUT, 1)
        d.check(moved is not None, f"the leader did not move to {candidate}: {members_text()}")
        restarted = {host: postmaster_started(host) for host in DB_HOSTS}
        for host in DB_HOSTS:
            d.check(restarted[host] != started[host], f"{host}: PostgreSQL was not restarted")
            running = shared_buffers(host)
            d.check(running == changed, f"{host}: shared_buffers {running}, not {changed}")
        # The standby first: it was up on the new value before the leader stopped to hand over.
        d.check(restarted[candidate] < restarted[old], f"restarted: {restarted}: the leader went first")
        d.note(f"{changed}: {candidate} restarted at {restarted[candidate]}, {old} at {restarted[old]}")
        new = d.follow_leader()
        if new is not None and new != old:
            d.count_split_brain(old, new)

        run_playbook(production, d, "database.yml", UPGRADE_TIMEOUT, step="database-back")
        back = wait_until(lambda: leader() == old and cluster_healthy(), FAILOVER_TIMEOUT, 1)
        d.check(back is not None, f"the leader did not move back to {old}: {members_text()}")
        for host in DB_HOSTS:
            running = shared_buffers(host)
            d.check(running == before, f"{host}: shared_buffers {running}, not {before}")
            pending = psql(host, "SELECT count(*) FROM pg_settings WHERE pending_restart")
            d.check(pending == "0", f"{host}: {pending} settings wait for a restart")
        d.follow_leader()
        return fault_at, since(fault_at, back if moved is not None else None)

    d.run(fault)
    d.assert_held()


@pytest.mark.destructive
def test_drill_7_database_hosts_rebuilt(production, drill):
    """Every database host lost with its disk, and with them two of etcd's three members. Fresh
    hosts of the same names; recover-etcd.yml rebuilds etcd around the third, with the lost
    cluster's record; site.yml must refuse the new, empty cluster (the patroni role: etcd knows
    another) before any API host migrates it, and name restore.yml; restore.yml
    brings the data back from the pgBackRest repository on the API host; site.yml again. Writes
    acknowledged within the archive lag before the loss may be lost, no earlier one."""
    production.ensure()  # in shape first (a member another drill left stopped: rejoined)
    if not json.loads(sh(API2, "runuser -u postgres -- pgbackrest --stanza=stet --output=json info"))[0][
        "backup"
    ]:
        sh(API2, f"{PGBACKREST_BACKUP_JOB} full", timeout=600)
    d = drill(
        7,
        "rebuild",
        f"docker rm -f {' '.join(DB_HOSTS)}; fresh hosts; recover-etcd.yml, site.yml, restore.yml, site.yml",
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
        docker("rm", "--force", *DB_HOSTS, timeout=120)
        d.note(f"{' and '.join(DB_HOSTS)} removed")
        production.recreate(*DB_HOSTS)
        d.note(f"fresh {' and '.join(DB_HOSTS)} after {round(time.time() - fault_at)} s")
        # Two of etcd's three members went with them: the third, alone, has no quorum.
        returncode, _ = playbook(
            "recover-etcd",
            "recover-etcd.yml",
            900,
            "-e",
            f"etcd_recover_from={API1}",
            "-e",
            "etcd_recover_confirm=yes",
        )
        d.check(returncode == 0, "recover-etcd.yml failed")
        d.check(etcd_healthy(), "etcd is not healthy after recover-etcd.yml")
        returncode, output = playbook("site-1", REPO / "site.yml", 1800)
        d.check(
            returncode != 0 and NEW_CLUSTER_REFUSED in output and "playbooks/restore.yml" in output,
            "site.yml did not refuse the new, empty cluster naming restore.yml",
        )
        # Whichever fresh host Patroni made leader (a standby holds the same tables).
        migrated = {}
        for host in DB_HOSTS:
            try:
                migrated[host] = psql(
                    host, "SELECT count(*) FROM pg_tables WHERE tablename = 'corrections'", timeout=60
                )
            except (RuntimeError, subprocess.TimeoutExpired):
                migrated[host] = "no answer"
        d.note(f"tables named corrections before the restore: {migrated}")
        d.check("0" in migrated.values(), "no database host answered after the first site.yml")
        d.check(
            all(n in ("0", "no answer") for n in migrated.values()),
            "an API host migrated the new, empty cluster before the restore",
        )
        returncode, _ = playbook(
            "restore", "restore.yml", 1800, "-e", "restore_confirm=yes", "-e", "restore_safety_backup=false"
        )
        d.check(returncode == 0, "restore.yml failed")
        returncode, _ = playbook("site-2", REPO / "site.yml", 1800)
        # No restart from here: the stet_api role restarts instances still on the old URL.
        d.check(returncode == 0, "site.yml after the restore failed")
        healthy = wait_until(lambda: not production.shape_problems(), 300, 5)
        # Acknowledged corrections are looked for on whichever fresh host leads now.
        d.follow_leader()
        return fault_at, since(fault_at, healthy)

    d.run(fault)
    d.assert_held()
