"""stet.ops.scram_sha256_verifier in a playbook against a real PostgreSQL: the server
accepts the verifiers the filter makes, and the filter keeps the ones the server made."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest
from conftest import admin_execute, superuser_url

PASSWORDS = ["plain-ascii-Pw1", "pässwörd straße", "I\u00adX\u2003y"]


@pytest.fixture
def verifier(run_playbook):
    def compute(password: str, current: str | None = None) -> str:
        variables = {"password": password} if current is None else {"password": password, "current": current}
        result = run_playbook("scram_verifier.yml", variables, secrets_to_hide=[password])
        assert not result.failed, result.output
        return result.result["msg"]

    return compute


@pytest.fixture
def role():
    name = f"stet_scram_{uuid.uuid4().hex[:12]}"
    admin_execute((f"CREATE ROLE {name} LOGIN", None))
    yield name
    admin_execute((f"DROP ROLE IF EXISTS {name}", None))


def logs_in(role: str, password: str) -> bool:
    admin = urlsplit(superuser_url())
    url = urlunsplit(("postgresql", f"{role}@{admin.hostname}:{admin.port}", "/postgres", "", ""))
    try:
        psycopg2.connect(url, password=password).close()
    except psycopg2.OperationalError:
        return False
    return True


@pytest.mark.parametrize("password", PASSWORDS)
def test_postgresql_accepts_the_filters_verifier(role, verifier, password):
    admin_execute((f"ALTER ROLE {role} PASSWORD %s", (verifier(password),)))
    assert logs_in(role, password)
    assert not logs_in(role, password + "x")


@pytest.mark.parametrize("password", PASSWORDS)
def test_the_filter_keeps_the_verifier_postgresql_made_for_the_same_password(role, verifier, password):
    admin_execute(
        ("SET password_encryption = 'scram-sha-256'", None), (f"ALTER ROLE {role} PASSWORD %s", (password,))
    )
    (current,) = admin_execute(("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)))[0]
    assert verifier(password, current) == current
    assert verifier(password + "x", current) != current
