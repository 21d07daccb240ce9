# Copyright: STET Ops contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Migration files and the plan of what a run does; no database access here."""

from __future__ import annotations

import hashlib
import os
import re

# NNN_some_name.sql: version NNN (int), name some_name (docs/interfaces.md).
# The API reads its bundle with the same rule (api/src/stet_api/migrations_bundle.py, held
# together by api/tests/test_shared_rules.py).
_FILE_NAME = re.compile(r"(?P<version>[0-9]+)_(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)\.sql")


class MigrationError(Exception):
    """The migration directory or the ledger is in a state the module refuses to act on."""


class MigrationFile:
    def __init__(self, path, version, name, content):
        self.path = path
        self.file_name = os.path.basename(path)
        self.version = version
        self.name = name
        self.content = content
        self.checksum = hashlib.sha256(content).hexdigest()

    def describe(self):
        return dict(version=self.version, name=self.name, file=self.file_name, checksum=self.checksum)


class LedgerEntry:
    def __init__(self, version, name, checksum, baselined):
        self.version = version
        self.name = name
        self.checksum = checksum
        self.baselined = baselined

    @classmethod
    def recording(cls, migration, baselined):
        return cls(migration.version, migration.name, migration.checksum, baselined)


def discover(directory):
    """Return the migration files of ``directory`` ordered by version.

    Files not ending in .sql are ignored (READMEs); a .sql file that does not follow the
    NNN_name.sql pattern, or two files with one version, are errors rather than guesses.
    """
    if not os.path.isdir(directory):
        raise MigrationError(f"path {directory} is not a directory")
    files, seen = [], {}
    for entry in sorted(os.listdir(directory)):
        if not entry.endswith(".sql"):
            continue
        match = _FILE_NAME.fullmatch(entry)
        if not match:
            raise MigrationError(f"{entry} in {directory} is not named NNN_name.sql")
        version = int(match.group("version"))
        if version in seen:
            raise MigrationError(f"{seen[version]} and {entry} in {directory} both have version {version}")
        seen[version] = entry
        path = os.path.join(directory, entry)
        with open(path, "rb") as handle:
            files.append(MigrationFile(path, version, match.group("name"), handle.read()))
    return sorted(files, key=lambda migration: migration.version)


class Plan:
    """What a run has to do, given the files and the ledger."""

    def __init__(self, files, ledger, baseline=None):
        by_version = {migration.version: migration for migration in files}
        if baseline is not None and baseline not in by_version:
            raise MigrationError(
                f"baseline {baseline} names no migration file (versions: {sorted(by_version)})"
            )
        self.drifted = [
            dict(migration.describe(), recorded_checksum=ledger[migration.version].checksum)
            for migration in files
            if migration.version in ledger and ledger[migration.version].checksum != migration.checksum
        ]
        unrecorded = [migration for migration in files if migration.version not in ledger]
        self.to_baseline = [m for m in unrecorded if baseline is not None and m.version <= baseline]
        self.pending = [m for m in unrecorded if baseline is None or m.version > baseline]
        applied_versions = [version for version in ledger if version in by_version]
        if self.pending and applied_versions and self.pending[0].version < max(applied_versions):
            raise MigrationError(
                f"{self.pending[0].file_name} is pending but version {max(applied_versions)} is already "
                "applied: a new migration needs a version above every applied one"
            )
        # Applied versions with no file: a newer release migrated this database already.
        self.unknown_applied = sorted(version for version in ledger if version not in by_version)
        self.target_version = max(by_version) if by_version else None

    @property
    def has_work(self):
        return bool(self.pending or self.to_baseline)
