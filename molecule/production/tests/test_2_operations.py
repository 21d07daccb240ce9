"""The release lifecycle under continuous reads and writes through the load balancer, in one
sequence: deploy v2 (adds a migration) -> rollback to v1 (older code on the newer schema) ->
a v3 whose gate fails (the roll stops after host 1, which stays drained through a run of the
nginx role) -> rollback to v1; then migrate.yml and restore-dump.yml for real (backup.yml and
test-restore.yml are the pilot's), all on v1 over v2's schema. tests/test_3_scale.py goes on
with scale.yml and a last site.yml, which proves that every tier, the application's included,
changes nothing and restarts nothing with the older release on the newer schema."""

from __future__ import annotations

import uuid

from conftest import (
    API_HOSTS,
    INITIAL_SCHEMA,
    INITIAL_VERSION,
    NEXT,
    NEXT_MIGRATION,
    NEXT_SCHEMA,
    PRIMARY,
    SOURCE_DIR,
    TOPOLOGY,
    address_of,
    api,
    applied_schema,
    assert_same_manifest,
    current_release,
    drained_hosts,
    link,
    load,
    main_pids,
    on_release,
    playbook,
    release_of,
    run_ok,
    step,
)

BROKEN = "v1.3.1-broken"
# A contract migration's number, after NEXT's.
CONTRACT = NEXT_SCHEMA + 1
# The links of a host rolled back to v1: the release rolled back from is pruned, no target left.
BACK_ON_V1 = {"current": INITIAL_VERSION, "last-good": INITIAL_VERSION, "previous": None}
# restore-dump.yml of the newest dump, confirmed.
RESTORE_LATEST_DUMP = (
    "restore-dump.yml",
    "-e",
    "restore_confirm=yes",
    "-e",
    "backup_file=/var/backups/stet/latest.dump",
)
# Manifest sha256 per release id, as first seen: the same id must keep naming these bytes.
MANIFESTS: dict[str, str] = {}


def deploy(release: str, source, *extra: str):
    return playbook(
        "deploy.yml", "-e", f"stet_version={release}", "-e", f"stet_api_source_dir={source}", *extra
    )


def words(output: str) -> str:
    """A playbook's output with its line wrapping undone (the callback wraps long messages)."""
    return " ".join(output.split())


def assert_every_host_runs(version: str) -> None:
    for name in API_HOSTS:
        assert release_of(name) == on_release(version), name


def assert_manifest(release: str) -> None:
    sha = assert_same_manifest(release, API_HOSTS)
    assert MANIFESTS.setdefault(release, sha) == sha, f"{release} changed bytes"


def links(name: str) -> dict:
    return {which: link(name, which) for which in ("current", "last-good", "previous")}


def test_the_first_release_is_one_artifact_on_every_host(client):
    assert_every_host_runs(INITIAL_VERSION)
    assert_manifest(INITIAL_VERSION)
    # Installed from the wheelhouse by hash: the venv's packages are the lock's versions.
    frozen = run_ok(API_HOSTS[0], f"/opt/stet/releases/{INITIAL_VERSION}/venv/bin/pip freeze")
    lock = (SOURCE_DIR / "requirements.lock").read_text().lower()
    for line in frozen.lower().replace("_", "-").splitlines():
        if "==" in line and not line.startswith("stet-api"):
            assert f"{line} \\" in lock, line


def test_deploy_of_a_release_with_a_migration_under_load(client, next_source):
    with load() as traffic:
        result = playbook(
            "deploy.yml", "-e", f"stet_version={NEXT}", "-e", f"stet_api_source_dir={next_source}"
        )
    assert result.returncode == 0, result.stderr
    assert_every_host_runs(NEXT)
    assert_manifest(NEXT)
    assert applied_schema() == NEXT_SCHEMA
    for name in API_HOSTS:
        assert links(name) == {"current": NEXT, "last-good": NEXT, "previous": INITIAL_VERSION}, name
    assert drained_hosts() == []
    # The deploy made sure of a backup at most an hour old before migrating.
    age = run_ok(PRIMARY, "echo $(( $(date +%s) - $(stat -L -c %Y /var/backups/stet/latest.dump) ))")
    assert int(age) < 3600
    step("deploy v2 (adds an expand migration)", traffic, min_reads=200, min_writes=10)


def test_a_release_id_that_names_other_bytes_is_refused_before_any_change(client, next_source):
    pids = {name: main_pids(name) for name in API_HOSTS}
    # v1's id with v2's sources: another artifact under an existing release id.
    result = playbook(
        "deploy.yml", "-e", f"stet_version={INITIAL_VERSION}", "-e", f"stet_api_source_dir={next_source}"
    )
    assert result.returncode != 0
    refusal = (
        f"Release {INITIAL_VERSION} already exists on {', '.join(sorted(API_HOSTS))} with another manifest"
    )
    assert refusal in words(result.stdout)
    assert {name: main_pids(name) for name in API_HOSTS} == pids
    assert_every_host_runs(NEXT)
    assert_manifest(INITIAL_VERSION)
    assert drained_hosts() == []


def test_rollback_across_a_contract_migration_is_refused_before_touching_a_host(client):
    pids = {name: main_pids(name) for name in API_HOSTS}
    # What a contract migration leaves: its ledger row, and its declaration that older code
    # does not run on it.
    TOPOLOGY.psql(
        PRIMARY,
        f"INSERT INTO schema_migrations (version, name, checksum) VALUES ({CONTRACT}, 'drop_origin', 'test');"  # noqa: S608
        f" INSERT INTO schema_window VALUES ({CONTRACT}, false)",
    )
    try:
        result = playbook("rollback.yml")
    finally:
        TOPOLOGY.psql(
            PRIMARY,
            f"DELETE FROM schema_window WHERE migration = {CONTRACT};"  # noqa: S608
            f" DELETE FROM schema_migrations WHERE version = {CONTRACT}",
        )
    assert result.returncode != 0
    output = words(result.stdout)
    assert f"Rollback to {INITIAL_VERSION} refused, no host touched" in output
    assert f"{CONTRACT:03d}_drop_origin" in output
    assert "playbooks/restore.yml" in output and "playbooks/deploy.yml" in output
    assert {name: main_pids(name) for name in API_HOSTS} == pids
    assert_every_host_runs(NEXT)
    assert drained_hosts() == []


def test_rollback_runs_the_older_release_on_the_newer_schema(client):
    with load() as traffic:
        result = playbook("rollback.yml")
    assert result.returncode == 0, result.stderr
    assert_every_host_runs(INITIAL_VERSION)
    assert applied_schema() == NEXT_SCHEMA
    for name in API_HOSTS:
        ready = run_ok(name, "curl -s --cacert /etc/ssl/stet-pki/ca.crt https://127.0.0.1:8000/ready")
        compact = ready.replace(" ", "")
        assert f'"applied":{NEXT_SCHEMA}' in compact and f'"expected":{INITIAL_SCHEMA}' in compact, ready
        # The release rolled back from is no rollback target any more: pruned.
        assert links(name) == BACK_ON_V1, name
        run_ok(name, f"test ! -e /opt/stet/releases/{NEXT}")
    assert drained_hosts() == []
    step("rollback to v1 (schema stays at v2's)", traffic, min_reads=100, min_writes=5)


def test_a_release_not_ready_stops_the_roll_at_host_1_before_current_moves(client, next_source):
    untouched = {name: main_pids(name) for name in API_HOSTS}
    # A release whose configuration the API refuses (pool minimum above its maximum): its
    # preflight fails on the first host, before `current` moves.
    with load() as traffic:
        result = playbook(
            "deploy.yml",
            "-e",
            f"stet_version={BROKEN}",
            "-e",
            f"stet_api_source_dir={next_source}",
            "-e",
            "stet_api_db_pool_min=10",
        )
    assert result.returncode != 0
    assert "STET_DB_POOL_MIN must not exceed STET_DB_POOL_MAX" in words(result.stdout), result.stdout[-3000:]
    # The first host installed the broken release but never switched to it: its instances
    # run the last good release, untouched, and it stays drained until an operator acts.
    assert links(API_HOSTS[0]) == BACK_ON_V1
    run_ok(API_HOSTS[0], f"test -e /opt/stet/releases/{BROKEN}/MANIFEST")
    assert drained_hosts() == [address_of(API_HOSTS[0])]
    # The second host was never reached.
    assert release_of(API_HOSTS[1]) == on_release(INITIAL_VERSION)
    assert {name: main_pids(name) for name in API_HOSTS} == untouched
    assert api("GET", "/health")[0] == 200
    step("deploy v3 (not ready on host 1)", traffic, min_reads=100, min_writes=5)


def test_a_drained_host_stays_drained_through_the_nginx_role(client):
    with load() as traffic:
        result = playbook("edge.yml")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert drained_hosts() == [address_of(API_HOSTS[0])]
    step("edge.yml (nginx role) with host 1 drained", traffic, min_reads=50, min_writes=3)


def test_undrain_puts_the_host_back_once_it_passes_its_gate(client):
    # The operator checked host 1 (still on its last good release) and puts it back.
    with load() as traffic:
        result = playbook("undrain.yml", "--limit", API_HOSTS[0])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert drained_hosts() == []
    step("undrain.yml (host 1)", traffic, min_reads=50, min_writes=3)


def test_rollback_after_a_failed_deploy_returns_to_the_last_good_release(client):
    untouched = main_pids(API_HOSTS[1])
    with load() as traffic:
        result = playbook("rollback.yml")
    assert result.returncode == 0, result.stderr
    assert_every_host_runs(INITIAL_VERSION)
    assert_manifest(INITIAL_VERSION)
    assert main_pids(API_HOSTS[1]) == untouched
    for name in API_HOSTS:
        assert links(name) == BACK_ON_V1, name
    run_ok(API_HOSTS[0], f"test ! -e /opt/stet/deploying && test ! -e /opt/stet/releases/{BROKEN}")
    assert drained_hosts() == []
    step("rollback (host 1 back to v1)", traffic, min_reads=100, min_writes=5)


def test_migrate_yml_backs_up_migrates_verifies_and_smoke_tests(client):
    result = playbook("migrate.yml")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "job=backup status=ok" in words(result.stdout)
    assert "Present: corrections_pkey, idx_tenant_subject, uniq_active_per_field" in words(result.stdout)
    assert applied_schema() == NEXT_SCHEMA
    assert NEXT_MIGRATION.split("_", 1)[1] in TOPOLOGY.psql(
        PRIMARY,
        f"SELECT name FROM schema_migrations WHERE version = {NEXT_SCHEMA}",  # noqa: S608 - an int
    )


def test_restore_stops_the_api_restores_the_dump_and_starts_it_again(client):
    assert playbook("backup.yml").returncode == 0
    # A correction written after the dump: the restore takes the database back before it.
    marker = f"restore-{uuid.uuid4().hex[:8]}"
    body = {
        "subject": {"type": "user", "id": marker},
        "field_key": "restore",
        "value": {"marker": marker},
        "class": "FACT",
        "permissions": {"readers": ["assistant"]},
        "actor": {"type": "system", "id": "stet-tests"},
        "idempotency_key": marker,
    }
    assert api("POST", "/v1/corrections", body)[0] == 201
    before = {name: main_pids(name) for name in API_HOSTS}
    result = playbook(*RESTORE_LATEST_DUMP)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    # Every instance was stopped and started again, and serves the restored database.
    after = {name: main_pids(name) for name in API_HOSTS}
    for name in API_HOSTS:
        assert set(after[name]).isdisjoint(before[name]), (name, before, after)
    count = TOPOLOGY.psql(PRIMARY, f"SELECT count(*) FROM corrections WHERE idempotency_key = '{marker}'")  # noqa: S608 - hex
    assert count == "0"
    status, facts = api("GET", f"/v1/facts?subject_type=user&subject_id={marker}&requester_id=assistant")
    assert status == 200 and facts["facts"] == [], facts
    assert applied_schema() == NEXT_SCHEMA
    assert current_release(API_HOSTS[0]) == INITIAL_VERSION


def test_restore_refuses_without_a_dump_or_a_confirmation(client):
    pids = main_pids(API_HOSTS[0])
    result = playbook("restore-dump.yml", "-e", "restore_confirm=yes")
    assert result.returncode != 0
    assert "Name the dump to restore" in result.stdout
    result = playbook("restore-dump.yml", "-e", "backup_file=/var/backups/stet/latest.dump")
    assert result.returncode != 0
    assert "Confirm with -e restore_confirm=yes. Nothing was stopped or changed." in words(result.stdout)
    assert main_pids(API_HOSTS[0]) == pids


def test_restore_refuses_while_a_backup_runs(client):
    pids = main_pids(API_HOSTS[0])
    lock = "/var/backups/stet/.backup.lock"
    run_ok(PRIMARY, f"systemd-run --unit=stet-test-backup-lock --collect flock {lock} sleep 300")
    try:
        # Until the unit holds the lock.
        run_ok(PRIMARY, f"for i in $(seq 50); do flock -n {lock} true || exit 0; sleep 0.1; done; exit 1")
        result = playbook(*RESTORE_LATEST_DUMP)
    finally:
        run_ok(PRIMARY, "systemctl stop stet-test-backup-lock")
    assert result.returncode != 0
    assert "A backup of the database is running on stet-prod-db1" in words(result.stdout)
    assert "Nothing was stopped or changed." in words(result.stdout)
    assert main_pids(API_HOSTS[0]) == pids
