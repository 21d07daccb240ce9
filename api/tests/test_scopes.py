"""Key scopes (migration 011): each endpoint needs one scope; a key without it gets 403
MISSING_SCOPE naming it, and nothing changes. Keys from before 011 keep every scope."""

from __future__ import annotations

import time
import uuid

import psycopg2
import pytest
from conftest import make_app
from helpers import (
    apply_sql_file,
    connect,
    correction,
    create_api_key,
    create_database,
    drop_database,
    read_query,
)
from stet_api.migrations_bundle import bundled_migrations

HEARTBEAT = {"system_id": "billing", "enforced_correction_version": "2026-01-01T00:00:00Z"}
REVOKE = {"reason": "test", "actor": {"type": "user", "id": "u-1"}}


def _auth(tenant, token):
    return {"X-Tenant-Id": tenant, "Authorization": f"Bearer {token}"}


# (scope the endpoint needs, method, path or path template, body)
ENDPOINTS = [
    ("read", "get", f"/v1/facts?{read_query()}", None),
    ("read", "get", f"/v1/history?{read_query()}&include_revoked=true", None),
    ("read", "get", "/v1/enforcement/status", None),
    ("read", "get", "/v1/enforcement/escalation", None),
    ("read", "get", "/v1/enforcement/systems", None),
    ("write", "post", "/v1/corrections", "correction"),
    ("write", "post", "/v1/corrections/{correction_id}/revoke", REVOKE),
    ("enforce", "post", "/v1/enforcement/heartbeat", HEARTBEAT),
    ("admin", "put", "/v1/enforcement/systems/billing", None),
    ("admin", "delete", "/v1/enforcement/systems/billing", None),
]


@pytest.fixture(scope="module")
def scoped_app(db_url):
    """Auth on; every test makes fresh keys, so the unknown-key lookup budget is raised."""
    app = make_app(
        db_url, STET_RATE_LIMIT_WRITES_PER_MINUTE="0", STET_AUTH_UNKNOWN_KEY_LOOKUPS_PER_SECOND="1000"
    )
    yield app
    app.extensions["stet_pool"].close()


@pytest.fixture
def secure(scoped_app):
    return scoped_app.test_client()


@pytest.fixture
def existing_correction(db_url, secure, tenant):
    """An ACTIVE correction and a registered system, made with an all-scope key."""
    _, token = create_api_key(db_url, tenant, scopes=["read", "write", "enforce", "admin"])
    made = secure.post("/v1/corrections", json=correction(), headers=_auth(tenant, token))
    assert made.status_code == 201
    assert secure.put("/v1/enforcement/systems/billing", headers=_auth(tenant, token)).status_code == 201
    return made.get_json()["correction_id"]


def _call(client, method, path, body, tenant, token, correction_id):
    json_body = correction() if body == "correction" else body
    return getattr(client, method)(
        path.format(correction_id=correction_id), json=json_body, headers=_auth(tenant, token)
    )


@pytest.mark.parametrize("key_scope", ["read", "write", "enforce", "admin"])
def test_each_endpoint_needs_its_scope(db_url, secure, tenant, existing_correction, key_scope):
    _, token = create_api_key(db_url, tenant, scopes=[key_scope])
    for needed, method, path, body in ENDPOINTS:
        response = _call(secure, method, path, body, tenant, token, existing_correction)
        if needed == key_scope:
            assert response.status_code < 400, (method, path, response.get_json())
            continue
        assert response.status_code == 403, (method, path, key_scope)
        error = response.get_json()["error"]
        assert error["code"] == "MISSING_SCOPE"
        assert f"'{needed}' scope" in error["message"]
        assert error["details"] == {"required_scope": needed, "key_scopes": [key_scope]}


def test_an_enforcer_key_cannot_silence_escalation_or_read_or_revoke(
    db_url, secure, tenant, existing_correction
):
    """The leaked-enforcer scenario of review M6: heartbeats only."""
    _, admin = create_api_key(db_url, tenant)
    _, enforcer = create_api_key(db_url, tenant, scopes=["enforce"])
    assert (
        secure.post("/v1/enforcement/heartbeat", json=HEARTBEAT, headers=_auth(tenant, enforcer)).status_code
        == 201
    )
    assert (
        secure.delete("/v1/enforcement/systems/billing", headers=_auth(tenant, enforcer)).status_code == 403
    )
    assert secure.get(f"/v1/facts?{read_query()}", headers=_auth(tenant, enforcer)).status_code == 403
    revoke = secure.post(
        f"/v1/corrections/{existing_correction}/revoke", json=REVOKE, headers=_auth(tenant, enforcer)
    )
    assert revoke.status_code == 403
    # Nothing changed: the system is still expected and the fact still served.
    systems = secure.get("/v1/enforcement/systems", headers=_auth(tenant, admin)).get_json()["systems"]
    assert [s["system_id"] for s in systems] == ["billing"]
    facts = secure.get(f"/v1/facts?{read_query()}", headers=_auth(tenant, admin)).get_json()["facts"]
    assert [f["correction_id"] for f in facts] == [existing_correction]


def test_a_read_only_key_reads_and_cannot_write(db_url, secure, tenant, existing_correction):
    _, reader = create_api_key(db_url, tenant, scopes=["read"])
    assert secure.get("/v1/enforcement/escalation", headers=_auth(tenant, reader)).status_code == 200
    assert secure.post("/v1/corrections", json=correction(), headers=_auth(tenant, reader)).status_code == 403
    assert secure.put("/v1/enforcement/systems/other", headers=_auth(tenant, reader)).status_code == 403


def test_a_scope_change_takes_effect_within_the_cache_bound(db_url, tenant):
    key_id, token = create_api_key(db_url, tenant, scopes=["read", "enforce"])
    app = make_app(db_url, STET_AUTH_CACHE_SECONDS="1")
    client = app.test_client()
    try:
        assert client.get(f"/v1/facts?{read_query()}", headers=_auth(tenant, token)).status_code == 200
        with connect(db_url) as conn, conn.cursor() as cursor:
            cursor.execute("UPDATE api_keys SET scopes = '{enforce}' WHERE key_id = %s", (key_id,))
        time.sleep(1.1)
        assert client.get(f"/v1/facts?{read_query()}", headers=_auth(tenant, token)).status_code == 403
    finally:
        app.extensions["stet_pool"].close()


def test_the_database_refuses_unknown_or_empty_scopes(db_url, tenant):
    key_id, _ = create_api_key(db_url, tenant)
    with connect(db_url) as conn, conn.cursor() as cursor:
        for scopes in (["read", "superuser"], []):
            with pytest.raises(psycopg2.errors.CheckViolation):
                cursor.execute("UPDATE api_keys SET scopes = %s::text[] WHERE key_id = %s", (scopes, key_id))


def test_keys_from_before_011_keep_every_scope(server_url):
    """A database at 010 with a key, migrated to 011: the key keeps what it could do."""
    url = create_database(server_url, "stet_api_scopes_migration")
    try:
        for version, _, path in bundled_migrations():
            if version <= 10:
                apply_sql_file(url, path)
        key_id, tenant = uuid.uuid4(), uuid.uuid4()
        with connect(url) as conn, conn.cursor() as cursor:
            cursor.execute(
                "INSERT INTO api_keys (key_id, tenant_id, name, secret_hash) VALUES (%s, %s, 'old', %s)",
                (str(key_id), str(tenant), "0" * 64),
            )
        for version, _, path in bundled_migrations():
            if version > 10:
                apply_sql_file(url, path)
        with connect(url) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT scopes FROM api_keys WHERE key_id = %s", (str(key_id),))
            assert cursor.fetchone()[0] == ["read", "write", "enforce", "admin"]
    finally:
        drop_database(server_url, url)


def test_removing_an_expected_system_is_logged_with_the_key(db_url, secure, tenant, caplog):
    key_id, admin = create_api_key(db_url, tenant, scopes=["admin"])
    assert secure.put("/v1/enforcement/systems/payroll", headers=_auth(tenant, admin)).status_code == 201
    with caplog.at_level("WARNING", logger="stet_api.audit"):
        assert (
            secure.delete("/v1/enforcement/systems/payroll", headers=_auth(tenant, admin)).status_code == 204
        )
    [record] = [r.getMessage() for r in caplog.records if r.name == "stet_api.audit"]
    assert (
        f"tenant_id={tenant}" in record and "system_id='payroll'" in record and f"key_id={key_id}" in record
    )
