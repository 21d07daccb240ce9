import hashlib

import pytest
from ansible_collections.stet.ops.plugins.module_utils.migrations import (
    LedgerEntry,
    MigrationError,
    Plan,
    discover,
)


@pytest.fixture
def directory(tmp_path):
    for file_name, sql in {
        "001_init.sql": "CREATE TABLE a (id int);",
        "002_add_origin.sql": "ALTER TABLE a ADD COLUMN origin jsonb;",
        "010_later.sql": "SELECT 1;",
        "README.md": "not a migration",
    }.items():
        (tmp_path / file_name).write_text(sql)
    return tmp_path


def ledger_of(files, versions, baselined=False):
    return {m.version: LedgerEntry.recording(m, baselined) for m in files if m.version in versions}


def test_discover_orders_by_numeric_version_and_ignores_other_files(directory):
    files = discover(str(directory))
    assert [(m.version, m.name) for m in files] == [(1, "init"), (2, "add_origin"), (10, "later")]
    assert files[0].checksum == hashlib.sha256(b"CREATE TABLE a (id int);").hexdigest()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("init.sql", "init.sql in .* is not named NNN_name.sql"),
        ("2_again.sql", "002_add_origin.sql and 2_again.sql in .* both have version 2"),
    ],
)
def test_discover_refuses_ambiguous_directories(directory, extra, message):
    (directory / extra).write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=message):
        discover(str(directory))


def test_discover_refuses_a_missing_directory(tmp_path):
    with pytest.raises(MigrationError, match="is not a directory"):
        discover(str(tmp_path / "absent"))


def test_plan_lists_unrecorded_files_as_pending(directory):
    files = discover(str(directory))
    plan = Plan(files, ledger_of(files, {1}))
    assert [m.version for m in plan.pending] == [2, 10]
    assert plan.to_baseline == [] and plan.drifted == [] and plan.target_version == 10


def test_plan_with_baseline_records_older_files_instead_of_running_them(directory):
    files = discover(str(directory))
    plan = Plan(files, {}, baseline=2)
    assert [m.version for m in plan.to_baseline] == [1, 2]
    assert [m.version for m in plan.pending] == [10]


def test_baseline_must_name_a_file(directory):
    with pytest.raises(MigrationError, match="baseline 3 names no migration file"):
        Plan(discover(str(directory)), {}, baseline=3)


def test_changed_applied_file_is_reported_as_drift(directory):
    files = discover(str(directory))
    ledger = ledger_of(files, {1, 2})
    (directory / "001_init.sql").write_text("CREATE TABLE a (id bigint);")
    plan = Plan(discover(str(directory)), ledger)
    drift = [(entry["file"], entry["recorded_checksum"]) for entry in plan.drifted]
    assert drift == [("001_init.sql", files[0].checksum)]


def test_a_new_file_below_an_applied_version_is_refused(directory):
    files = discover(str(directory))
    ledger = ledger_of(files, {1, 10})
    with pytest.raises(MigrationError, match=r"002_add_origin\.sql is pending but version 10 is already"):
        Plan(files, ledger)


def test_versions_applied_by_a_newer_release_are_reported(directory):
    files = discover(str(directory))
    ledger = ledger_of(files, {1, 2, 10})
    ledger[11] = LedgerEntry(11, "newer", "0" * 64, False)
    plan = Plan(files, ledger)
    assert plan.unknown_applied == [11] and not plan.has_work
