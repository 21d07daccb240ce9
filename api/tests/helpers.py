"""Shared test helpers: databases, migrations, ledger rows, API keys, request bodies."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg2
from stet_api.migrations_bundle import bundled_migrations

HISTORICAL_DIR = Path(__file__).parent / "historical"


def database_url(server_url: str, dbname: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{dbname}"))


@contextmanager
def connect(url: str, autocommit: bool = True):
    conn = psycopg2.connect(url)
    conn.autocommit = autocommit
    try:
        yield conn
    finally:
        conn.close()


def with_session_settings(url: str, **settings: int | str) -> str:
    """url with PostgreSQL settings for every session it opens (libpq's options): the bounds
    the postgresql role gives the application role (ALTER ROLE ... SET), given here by the
    connection so that a test can shorten them."""
    options = " ".join(f"-c {name}={value}" for name, value in settings.items())
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options={quote(options)}"


def create_database(server_url: str, prefix: str) -> str:
    """A fresh, empty database on the test server; returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with connect(server_url) as conn, conn.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    return database_url(server_url, name)


def drop_database(server_url: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    with connect(server_url) as conn, conn.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def apply_sql_file(url: str, path: Path) -> None:
    """Run one migration file in one transaction, as the migrate module does."""
    with connect(url, autocommit=False) as conn:
        with conn.cursor() as cursor:
            cursor.execute(path.read_text(encoding="utf-8"))
        conn.commit()


def apply_bundled_migrations(url: str) -> None:
    for _, _, path in bundled_migrations():
        apply_sql_file(url, path)


def write_ledger(url: str, up_to_version: int | None = None) -> None:
    """The ledger rows stet.ops.migrate writes (docs/interfaces.md)."""
    with connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS public.schema_migrations (version integer PRIMARY KEY,"
            " name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),"
            " baselined boolean NOT NULL DEFAULT false)"
        )
        cursor.execute("DELETE FROM public.schema_migrations")
        for version, name, path in bundled_migrations():
            if up_to_version is None or version <= up_to_version:
                checksum = hashlib.sha256(path.read_bytes()).hexdigest()
                cursor.execute(
                    "INSERT INTO public.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (version, name, checksum),
                )


def create_api_key(
    url: str, tenant_id: str, name: str | None = None, scopes: list[str] | None = None
) -> tuple[str, str]:
    """Store a key the way stet.ops.api_key does (scopes None: the column default, every
    scope); return (key_id, token)."""
    key_id = uuid.uuid4()
    secret = secrets.token_urlsafe(32)
    with connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(
            "INSERT INTO api_keys (key_id, tenant_id, name, secret_hash) VALUES (%s, %s, %s, %s)",
            (
                str(key_id),
                tenant_id,
                name or f"key-{key_id.hex[:8]}",
                hashlib.sha256(secret.encode()).hexdigest(),
            ),
        )
        if scopes is not None:
            cursor.execute("UPDATE api_keys SET scopes = %s WHERE key_id = %s", (scopes, str(key_id)))
    return str(key_id), f"stet_{key_id.hex}_{secret}"


def correction(**overrides) -> dict:
    body = {
        "subject": {"type": "user", "id": "u-1"},
        "field_key": "allergy",
        "value": "peanuts",
        "class": "FACT",
        "permissions": {"readers": ["assistant"]},
        "actor": {"type": "user", "id": "u-1"},
        "idempotency_key": uuid.uuid4().hex,
    }
    body.update(overrides)
    return body


def read_query(subject_id: str = "u-1", requester_id: str = "assistant", **extra: str) -> str:
    params = {"subject_type": "user", "subject_id": subject_id, "requester_id": requester_id, **extra}
    return "&".join(f"{key}={value}" for key, value in params.items())
