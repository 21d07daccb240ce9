"""The schema compatibility window: /ready accepts a schema newer than the code when every
newer migration declares that older code still runs on it (expand), and refuses one past a
migration that says it does not (contract) or that declares nothing."""

from __future__ import annotations

import re

import psycopg2
import pytest
from conftest import make_app
from helpers import apply_bundled_migrations, create_database, drop_database, write_ledger
from stet_api.migrations_bundle import bundled_migrations, expected_version

# Migrations before 010 predate the window; every later one declares itself in schema_window.
FIRST_WINDOW_MIGRATION = 10
DECLARATION = re.compile(
    r"INSERT\s+INTO\s+schema_window\s*\(\s*migration\s*,\s*older_code_runs\s*\)\s*"
    r"VALUES\s*\(\s*(?P<version>\d+)\s*,\s*(?P<runs>true|false)\s*\)",
    re.IGNORECASE,
)


@pytest.fixture
def newer_schema(server_url):
    """A database migrated to this code's version, plus a function that applies one more
    migration (a ledger row, and a schema_window row unless declared is None)."""
    url = create_database(server_url, "stet_api_window")
    apply_bundled_migrations(url)
    write_ledger(url)
    app = make_app(url)

    def apply(version: int, name: str, declared: bool | None) -> None:
        with psycopg2.connect(url) as conn, conn.cursor() as cursor:
            cursor.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (version, name, "test"),
            )
            if declared is not None:
                cursor.execute("INSERT INTO schema_window VALUES (%s, %s)", (version, declared))
        conn.close()

    yield app.test_client(), apply
    app.extensions["stet_pool"].close()
    drop_database(server_url, url)


def test_every_migration_from_010_declares_whether_older_code_runs_on_it():
    for version, name, path in bundled_migrations():
        declarations = DECLARATION.findall(path.read_text())
        if version < FIRST_WINDOW_MIGRATION:
            assert declarations == [], name
        else:
            assert [int(found[0]) for found in declarations] == [version], f"{path.name}: {declarations}"


def test_ready_at_the_expected_version(newer_schema):
    client, _ = newer_schema
    body = client.get("/ready").get_json()
    assert body["status"] == "ready"
    assert body["migrations"] == {"applied": expected_version(), "expected": expected_version()}


def test_ready_on_a_newer_schema_whose_migrations_older_code_runs_on(newer_schema):
    client, apply = newer_schema
    later = expected_version() + 1
    apply(later, "add_notes", declared=True)
    apply(later + 1, "add_index", declared=True)
    response = client.get("/ready")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["migrations"] == {"applied": later + 1, "expected": expected_version()}


def test_not_ready_past_a_migration_older_code_does_not_run_on(newer_schema):
    client, apply = newer_schema
    later = expected_version() + 1
    apply(later, "add_notes", declared=True)
    apply(later + 1, "drop_origin", declared=False)
    response = client.get("/ready")
    assert response.status_code == 503
    body = response.get_json()
    assert body["error"]["code"] == "SCHEMA_OUTSIDE_WINDOW"
    assert body["incompatible"] == [f"{later + 1:03d}_drop_origin"]
    assert f"{later + 1:03d}_drop_origin" in body["error"]["message"]


def test_not_ready_past_a_migration_that_declares_nothing(newer_schema):
    client, apply = newer_schema
    later = expected_version() + 1
    apply(later, "undeclared", declared=None)
    response = client.get("/ready")
    assert response.status_code == 503
    assert response.get_json()["incompatible"] == [f"{later:03d}_undeclared"]


def test_not_ready_on_an_older_schema(server_url):
    url = create_database(server_url, "stet_api_window_old")
    apply_bundled_migrations(url)
    write_ledger(url, up_to_version=expected_version() - 1)
    app = make_app(url)
    try:
        response = app.test_client().get("/ready")
        assert response.status_code == 503
        assert response.get_json()["error"]["code"] == "MIGRATIONS_NOT_CURRENT"
    finally:
        app.extensions["stet_pool"].close()
        drop_database(server_url, url)
