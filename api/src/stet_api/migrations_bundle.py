"""The SQL migrations shipped with the code, and the version /ready expects."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path

# The stet.ops.migrate module's rule (module_utils/migrations.py), which applies these files:
# a name it applies is one /ready accepts. tests/test_shared_rules.py holds the two together.
MIGRATION_NAME = re.compile(r"(?P<version>[0-9]+)_(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)\.sql")


def migrations_dir() -> Path:
    """The wheel carries the files as package data; an editable install reads api/migrations."""
    packaged = Path(str(resources.files("stet_api"))) / "migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "migrations"


@cache
def bundled_migrations() -> tuple[tuple[int, str, Path], ...]:
    found = []
    for path in sorted(migrations_dir().glob("*.sql")):
        match = MIGRATION_NAME.fullmatch(path.name)
        if match is None:
            raise RuntimeError(f"migration file name does not follow NNN_name.sql: {path.name}")
        found.append((int(match["version"]), match["name"], path))
    if not found:
        raise RuntimeError(f"no migrations found in {migrations_dir()}")
    return tuple(found)


def expected_version() -> int:
    return bundled_migrations()[-1][0]
