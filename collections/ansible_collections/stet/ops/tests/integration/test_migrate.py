"""stet.ops.migrate through ansible-playbook against a real PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import time
from urllib.parse import urlsplit

import psycopg2
import pytest
from conftest import (
    API_MIGRATIONS,
    Database,
    PlaybookRun,
    admin_execute,
    playbook_command,
    playbook_environment,
)

INIT = "BEGIN;\nCREATE TABLE corrections (id serial PRIMARY KEY, note text DEFAULT 'a;b');\nCOMMIT;\n"
ADD_ORIGIN = (
    "-- like the guide's 002: guarded, in a DO block\n"
    "DO $$\nBEGIN\n  IF NOT EXISTS (SELECT 1 FROM information_schema.columns\n"
    "    WHERE table_name = 'corrections' AND column_name = 'origin') THEN\n"
    "    ALTER TABLE corrections ADD COLUMN origin jsonb;\n  END IF;\nEND\n$$;\n"
)
# The key stet.ops.migrate locks ("STETmigr"), as another run would hold it.
MIGRATION_LOCK_KEY = 0x535445546D696772
WAITING_FOR_ADVISORY_LOCK = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = %s AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
)
HEARTBEATS = "CREATE TABLE enforcement_heartbeats (system_id text NOT NULL, reported_at timestamptz);\n"


def write_migrations(directory, files):
    directory.mkdir(exist_ok=True)
    for file_name, sql in files.items():
        (directory / file_name).write_text(sql)
    return directory


@pytest.fixture
def migrations(tmp_path):
    return write_migrations(tmp_path / "migrations", {"001_init.sql": INIT, "002_add_origin.sql": ADD_ORIGIN})


def migrate(run_playbook, database, migrations, check=False, diff=False, **options):
    variables = dict(migrations_path=migrations, dsn_file=database.dsn_file)
    variables.update(options)
    return run_playbook("migrate.yml", variables, check, diff, secrets_to_hide=[database.password])


def table_exists(database, name):
    return database.query("SELECT to_regclass(%s) IS NOT NULL", (name,))[0][0]


def files_of(entries):
    return [entry["file"] for entry in entries]


def test_apply_from_empty_then_rerun_is_unchanged(run_playbook, database, migrations):
    first = migrate(run_playbook, database, migrations)
    assert first.rc == 0 and first.result["changed"]
    assert files_of(first.result["applied"]) == ["001_init.sql", "002_add_origin.sql"]
    assert first.result["current_version"] == 2 and first.result["pending"] == []
    assert database.ledger() == [(1, "init", False), (2, "add_origin", False)]
    columns = database.query(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_name = 'corrections' ORDER BY ordinal_position"
    )
    assert columns == [("id",), ("note",), ("origin",)]

    second = migrate(run_playbook, database, migrations)
    assert second.rc == 0 and not second.result["changed"]
    assert second.result["applied"] == [] and second.result["current_version"] == 2


def test_check_mode_lists_pending_files_and_changes_nothing(run_playbook, database, migrations):
    migrate(run_playbook, database, migrations)
    write_migrations(migrations, {"003_heartbeats.sql": HEARTBEATS})

    checked = migrate(run_playbook, database, migrations, check=True, diff=True)
    assert checked.rc == 0 and checked.result["changed"]
    assert files_of(checked.result["pending"]) == ["003_heartbeats.sql"]
    assert checked.result["executed_commands"] == [HEARTBEATS.strip().rstrip(";")]
    assert "003 heartbeats applied" in checked.result["diff"]["after"]
    assert "003" not in checked.result["diff"]["before"]
    assert not table_exists(database, "enforcement_heartbeats")
    assert [row[0] for row in database.ledger()] == [1, 2]


def test_check_mode_on_a_database_without_ledger_creates_nothing(run_playbook, database, migrations):
    checked = migrate(run_playbook, database, migrations, check=True)
    assert checked.rc == 0 and files_of(checked.result["pending"]) == ["001_init.sql", "002_add_origin.sql"]
    assert not table_exists(database, "public.schema_migrations")


def test_a_failing_file_is_rolled_back_and_named_with_its_statement(run_playbook, database, migrations):
    broken = "CREATE TABLE half_done (id int);\n\nUPDATE corrections\n  SET no_such_column = 1;\n"
    write_migrations(migrations, {"003_broken.sql": broken, "004_after.sql": HEARTBEATS})
    failed = migrate(run_playbook, database, migrations)
    assert failed.rc != 0 and failed.failed
    result = failed.result
    assert result["failed_file"] == "003_broken.sql" and result["failed_line"] == 3
    assert result["failed_statement"] == "UPDATE corrections\n  SET no_such_column = 1"
    assert result["sqlstate"] == "42703"
    assert "003_broken.sql failed at the statement starting on line 3" in result["msg"]
    assert "no_such_column" in result["msg"]
    assert files_of(result["applied"]) == ["001_init.sql", "002_add_origin.sql"]
    assert files_of(result["pending"]) == ["003_broken.sql", "004_after.sql"]
    assert result["current_version"] == 2
    assert not table_exists(database, "half_done"), "the failing file was not rolled back"
    assert not table_exists(database, "enforcement_heartbeats"), "a file after the failing one ran"
    assert [row[0] for row in database.ledger()] == [1, 2]


def test_changed_applied_file_is_refused_unless_drift_is_allowed(run_playbook, database, migrations):
    migrate(run_playbook, database, migrations)
    (migrations / "001_init.sql").write_text(INIT.replace("serial", "bigserial"))
    write_migrations(migrations, {"003_heartbeats.sql": HEARTBEATS})

    refused = migrate(run_playbook, database, migrations)
    assert refused.rc != 0
    assert "001_init.sql" in refused.result["msg"] and "allow_checksum_drift" in refused.result["msg"]
    assert not table_exists(database, "enforcement_heartbeats"), "drift must stop the run before applying"

    allowed = migrate(run_playbook, database, migrations, allow_checksum_drift=True)
    assert allowed.rc == 0 and files_of(allowed.result["applied"]) == ["003_heartbeats.sql"]
    assert files_of(allowed.result["drifted"]) == ["001_init.sql"]
    assert any("001_init.sql" in warning for warning in allowed.result["warnings"])


def test_baseline_adopts_a_database_migrated_by_hand_with_psql(run_playbook, database, migrations):
    for file_name in ("001_init.sql", "002_add_origin.sql"):  # the guide's way: psql -f, one by one
        database.run_file_with_psql(migrations / file_name)
    write_migrations(migrations, {"003_heartbeats.sql": HEARTBEATS})

    adopted = migrate(run_playbook, database, migrations, baseline=2)
    assert adopted.rc == 0, adopted.result.get("msg")
    assert files_of(adopted.result["baselined"]) == ["001_init.sql", "002_add_origin.sql"]
    assert files_of(adopted.result["applied"]) == ["003_heartbeats.sql"]
    assert database.ledger() == [(1, "init", True), (2, "add_origin", True), (3, "heartbeats", False)]

    again = migrate(run_playbook, database, migrations, baseline=2)
    assert again.rc == 0 and not again.result["changed"]


def test_baseline_naming_no_file_is_refused(run_playbook, database, migrations):
    refused = migrate(run_playbook, database, migrations, baseline=7)
    assert refused.rc != 0 and "baseline 7 names no migration file" in refused.result["msg"]
    assert not table_exists(database, "corrections")


def run_concurrently_and_check(database, migrations, dsn_file):
    """Two runs at once: both succeed, one applies everything while the other waits for the lock."""
    # The first file holds its transaction open long enough for the second run to arrive.
    write_migrations(migrations, {"001_init.sql": INIT.replace("BEGIN;\n", "BEGIN;\nSELECT pg_sleep(4);\n")})
    command = playbook_command("migrate.yml", dict(migrations_path=migrations, dsn_file=dsn_file))
    pipes = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = [subprocess.Popen(command, env=playbook_environment(), **pipes) for _run in range(2)]
    saw_a_run_waiting = False
    while any(run.poll() is None for run in runs):
        waiting = admin_execute((WAITING_FOR_ADVISORY_LOCK, (database.name,)))[0][0]
        saw_a_run_waiting |= waiting > 0
        time.sleep(0.2)
    results = []
    for run in runs:
        stdout, stderr = run.communicate()
        results.append(PlaybookRun(subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr)))
    assert [result.rc for result in results] == [0, 0]
    assert saw_a_run_waiting, "the second run never waited for the migration lock"
    assert sorted(result.result["changed"] for result in results) == [False, True]
    applier = next(result for result in results if result.result["changed"])
    assert files_of(applier.result["applied"]) == ["001_init.sql", "002_add_origin.sql"]
    assert all(result.result["current_version"] == 2 for result in results)
    assert [row[0] for row in database.ledger()] == [1, 2]


def test_two_concurrent_runs_apply_each_file_once(database, migrations):
    run_concurrently_and_check(database, migrations, database.dsn_file)


def test_the_roles_request_bounds_cut_no_migration_short(database, migrations):
    """The role carries bounds meant for API requests, as the postgresql role sets them, far
    shorter than the runs: the file of 4 s, the other run's wait for the lock and the idle
    transaction holding the lock all outlast them, and both runs succeed."""
    admin_execute(
        (f"ALTER ROLE {database.name} SET statement_timeout = 200", None),
        (f"ALTER ROLE {database.name} SET idle_in_transaction_session_timeout = 200", None),
    )
    run_concurrently_and_check(database, migrations, database.dsn_file)


def test_a_lock_held_too_long_fails_the_run_without_applying(run_playbook, database, migrations):
    holder = psycopg2.connect(database.url)
    try:
        with holder.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        blocked = migrate(run_playbook, database, migrations, lock_timeout=1)
    finally:
        holder.close()
    assert blocked.rc != 0 and "held the lock for more than 1s" in blocked.result["msg"]
    assert not table_exists(database, "corrections")


def test_concurrent_runs_through_pgbouncer_transaction_pooling(database, migrations, pgbouncer_dsn_file):
    run_concurrently_and_check(database, migrations, pgbouncer_dsn_file)


def test_login_options_work_and_the_password_stays_out_of_the_output(run_playbook, database, migrations):
    address = urlsplit(database.url)
    variables = dict(migrations_path=migrations, login_host=address.hostname, login_port=address.port)
    variables.update(login_user=database.name, login_password=database.password, db=database.name)
    applied = run_playbook("migrate_with_login.yml", variables, secrets_to_hide=[database.password])
    assert applied.rc == 0 and applied.result["current_version"] == 2

    wrong_password = "wrong-password-123"
    variables["login_password"] = wrong_password
    wrong = run_playbook("migrate_with_login.yml", variables, secrets_to_hide=[wrong_password])
    assert wrong.rc != 0 and "password authentication failed" in wrong.result["msg"]


def test_unreadable_dsn_file_is_a_clear_error(run_playbook, database, migrations, tmp_path):
    missing = migrate(run_playbook, database, migrations, dsn_file=str(tmp_path / "nope"))
    assert missing.rc != 0 and missing.result["msg"] == f"dsn_file {tmp_path / 'nope'} does not exist"

    garbage = tmp_path / "garbage"
    garbage.write_text(f"host=x password={database.password} this is not a dsn\n")
    invalid = migrate(run_playbook, database, migrations, dsn_file=str(garbage))
    assert invalid.rc != 0 and "does not hold a valid PostgreSQL URL" in invalid.result["msg"]


def test_a_host_without_psycopg2_is_told_what_to_install(run_playbook, database, migrations, tmp_path):
    bare = tmp_path / "bare-python"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    interpreter = str(bare / "bin" / "python")
    probe = subprocess.run([interpreter, "-c", "import psycopg2"], capture_output=True, check=False)
    assert probe.returncode != 0, "the bare interpreter must lack psycopg2"

    missing = migrate(run_playbook, database, migrations, ansible_python_interpreter=interpreter)
    assert missing.rc != 0
    assert "Failed to import the required Python library (psycopg2)" in missing.result["msg"]


def test_the_api_migrations_apply_from_empty_and_adopt_a_guide_database(run_playbook, database, tmp_path):
    """The real migrations of api/: from empty, and on a database migrated by hand up to 002."""
    if not any(API_MIGRATIONS.glob("*.sql")):
        pytest.fail(f"{API_MIGRATIONS} holds no migrations yet")
    highest = max(int(path.name.split("_")[0]) for path in API_MIGRATIONS.glob("*.sql"))
    fresh = migrate(run_playbook, database, API_MIGRATIONS)
    assert fresh.rc == 0, fresh.result.get("msg")
    assert fresh.result["current_version"] == highest

    by_hand = Database(tmp_path)
    try:
        for file_name in sorted(path.name for path in API_MIGRATIONS.glob("00[12]_*.sql")):
            by_hand.run_file_with_psql(API_MIGRATIONS / file_name)
        adopted = migrate(run_playbook, by_hand, API_MIGRATIONS, baseline=2)
        assert adopted.rc == 0, adopted.result.get("msg")
        assert adopted.result["current_version"] == highest
        assert [row[2] for row in by_hand.ledger()[:3]] == [True, True, False]
    finally:
        by_hand.drop()
