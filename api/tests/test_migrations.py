"""Migrations: clean on an empty database and on one migrated by hand with the old files."""

from __future__ import annotations

import psycopg2
import pytest
from helpers import (
    HISTORICAL_DIR,
    apply_bundled_migrations,
    apply_sql_file,
    connect,
    create_database,
    drop_database,
)

CRITICAL_INDEXES = {"corrections_pkey", "idx_tenant_subject", "uniq_active_per_field"}
TABLES = {
    "corrections",
    "idempotency",
    "enforcement_heartbeats",
    "api_keys",
    "enforcement_expected_systems",
    "rate_limit_windows",
}


@pytest.fixture
def scratch_db(server_url):
    url = create_database(server_url, "stet_api_migrations")
    yield url
    drop_database(server_url, url)


def _schema(url):
    """Tables, columns with types and nullability, and index definitions of public."""
    with connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name, data_type, is_nullable, column_default"
            " FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2"
        )
        columns = cursor.fetchall()
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1")
        indexes = cursor.fetchall()
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE connamespace = 'public'::regnamespace ORDER BY 1"
        )
        constraints = cursor.fetchall()
    return columns, indexes, constraints


def test_empty_database_gets_every_table_and_the_critical_indexes(scratch_db):
    apply_bundled_migrations(scratch_db)
    columns, indexes, _ = _schema(scratch_db)
    assert {table for table, *_ in columns} >= TABLES
    assert {name for name, _ in indexes} >= CRITICAL_INDEXES
    unique_active = dict(indexes)["uniq_active_per_field"]
    assert "UNIQUE" in unique_active
    assert "WHERE (status = 'ACTIVE'::text)" in unique_active


def test_applying_every_file_twice_changes_nothing(scratch_db):
    apply_bundled_migrations(scratch_db)
    before = _schema(scratch_db)
    apply_bundled_migrations(scratch_db)
    assert _schema(scratch_db) == before


def test_historical_files_fail_on_003_as_the_guide_warns(scratch_db):
    apply_sql_file(scratch_db, HISTORICAL_DIR / "001_init.sql")
    apply_sql_file(scratch_db, HISTORICAL_DIR / "002_add_origin.sql")
    with pytest.raises(psycopg2.errors.DuplicateColumn):
        apply_sql_file(scratch_db, HISTORICAL_DIR / "003_add_origin_to_corrections.sql")


def test_hand_migrated_database_ends_identical_to_a_fresh_one_and_keeps_its_rows(server_url, scratch_db):
    apply_sql_file(scratch_db, HISTORICAL_DIR / "001_init.sql")
    apply_sql_file(scratch_db, HISTORICAL_DIR / "002_add_origin.sql")
    with connect(scratch_db) as conn, conn.cursor() as cursor:
        cursor.execute(
            "INSERT INTO corrections (correction_id, tenant_id, subject_type, subject_id, field_key, value,"
            " class, status, permissions, actor_type, actor_id, idempotency_key, origin) VALUES"
            " (gen_random_uuid(), gen_random_uuid(), 'user', 'u', 'allergy', '\"peanuts\"', 'FACT', 'ACTIVE',"
            " '{\"readers\": [\"a\"]}', 'user', 'u', 'k', '{\"service\": \"old\"}')"
        )
    apply_bundled_migrations(scratch_db)

    fresh = create_database(server_url, "stet_api_fresh")
    try:
        apply_bundled_migrations(fresh)
        assert _schema(scratch_db) == _schema(fresh)
    finally:
        drop_database(server_url, fresh)
    with connect(scratch_db) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT value, origin, status FROM corrections")
        assert cursor.fetchall() == [("peanuts", {"service": "old"}, "ACTIVE")]


def test_database_rejects_a_second_active_row_and_unknown_status(scratch_db):
    apply_bundled_migrations(scratch_db)
    insert = (
        "INSERT INTO corrections (correction_id, tenant_id, subject_type, subject_id, field_key, value,"
        " class, status, permissions, actor_type, actor_id, idempotency_key, origin)"
        " VALUES (gen_random_uuid(), '00000000-0000-0000-0000-000000000001', 'user', 'u', 'f', '1',"
        " 'FACT', %s, '{}', 'a', 'a', 'k', '{}')"
    )
    with connect(scratch_db) as conn, conn.cursor() as cursor:
        cursor.execute(insert, ("ACTIVE",))
        cursor.execute(insert, ("SUPERSEDED",))
        with pytest.raises(psycopg2.errors.UniqueViolation):
            cursor.execute(insert, ("ACTIVE",))
        with pytest.raises(psycopg2.errors.CheckViolation):
            cursor.execute(insert, ("DELETED",))
