"""Fixtures against the real PostgreSQL named by STET_TEST_DATABASE_URL (a superuser URL).

`scripts/test-postgres start` prints one. Each session creates its own database,
migrates it with the bundled files and writes the ledger the migrate module would.
"""

from __future__ import annotations

import os
import uuid

import pytest
from helpers import apply_bundled_migrations, create_database, drop_database, write_ledger
from stet_api import create_app


@pytest.fixture(scope="session")
def server_url() -> str:
    url = os.environ.get("STET_TEST_DATABASE_URL")
    if not url:
        pytest.fail(
            "STET_TEST_DATABASE_URL is not set; run"
            " `export STET_TEST_DATABASE_URL=$(scripts/test-postgres start)` first",
            pytrace=False,
        )
    return url


@pytest.fixture(scope="session")
def db_url(server_url: str):
    url = create_database(server_url, "stet_api_test")
    apply_bundled_migrations(url)
    write_ledger(url)
    yield url
    drop_database(server_url, url)


def make_app(db_url: str, **env: str):
    app = create_app({"DATABASE_URL": db_url, "STET_DB_POOL_MAX": "12", "STET_ENV": "test", **env})
    app.config["TESTING"] = True
    return app


@pytest.fixture(scope="session")
def legacy_app(db_url: str):
    """Auth off, as for legacy clients that send only X-Tenant-Id."""
    app = make_app(
        db_url,
        STET_AUTH_REQUIRED="false",
        STET_UNAUTHENTICATED_NETWORKS="127.0.0.0/8",
        STET_RATE_LIMIT_WRITES_PER_MINUTE="0",
    )
    yield app
    app.extensions["stet_pool"].close()


@pytest.fixture(scope="session")
def secure_app(db_url: str):
    """Auth on (the default), rate limit off unless a test builds its own app."""
    app = make_app(db_url, STET_RATE_LIMIT_WRITES_PER_MINUTE="0")
    yield app
    app.extensions["stet_pool"].close()


@pytest.fixture
def client(legacy_app):
    return legacy_app.test_client()


@pytest.fixture
def tenant() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def headers(tenant: str) -> dict[str, str]:
    return {"X-Tenant-Id": tenant}
