"""API keys: hashed, compared in constant time, 401 vs 403, isolation with keys."""

from __future__ import annotations

import re
import secrets
import time
import uuid

import pytest
from conftest import make_app
from helpers import connect, correction, create_api_key, read_query


@pytest.fixture
def secure(secure_app):
    return secure_app.test_client()


@pytest.fixture
def key(db_url, tenant):
    return create_api_key(db_url, tenant)


def _auth(tenant, token):
    return {"X-Tenant-Id": tenant, "Authorization": f"Bearer {token}"}


def test_valid_key_for_its_tenant_is_accepted(secure, tenant, key):
    response = secure.post("/v1/corrections", json=correction(), headers=_auth(tenant, key[1]))
    assert response.status_code == 201
    facts = secure.get(f"/v1/facts?{read_query()}", headers=_auth(tenant, key[1])).get_json()["facts"]
    assert len(facts) == 1


def test_x_api_key_header_is_accepted(secure, tenant, key):
    response = secure.get(f"/v1/facts?{read_query()}", headers={"X-Tenant-Id": tenant, "X-API-Key": key[1]})
    assert response.status_code == 200


def test_only_the_hash_of_the_secret_is_stored(db_url, key):
    key_id, token = key
    with connect(db_url) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT secret_hash FROM api_keys WHERE key_id = %s", (key_id,))
        stored = cursor.fetchone()[0]
    assert token.rsplit("_", 1)[1] not in stored
    assert len(stored) == 64


@pytest.mark.parametrize(
    "token_for",
    ["none", "malformed", "wrong_scheme", "unknown_key", "wrong_secret"],
)
def test_missing_or_invalid_keys_are_401(secure, tenant, key, token_for):
    token = key[1]
    headers = {"X-Tenant-Id": tenant}
    if token_for == "malformed":
        headers["Authorization"] = "Bearer stet_nothex_short"
    elif token_for == "wrong_scheme":
        headers["Authorization"] = f"Basic {token}"
    elif token_for == "unknown_key":
        headers["Authorization"] = f"Bearer stet_{uuid.uuid4().hex}_{token.rsplit('_', 1)[1]}"
    elif token_for == "wrong_secret":
        headers["Authorization"] = f"Bearer {token[:-4]}AAAA"
    response = secure.get(f"/v1/facts?{read_query()}", headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "UNAUTHENTICATED"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def _lookups(client) -> dict[str, float]:
    text = client.get("/metrics").get_data(as_text=True)
    found = re.findall(r'^stet_api_key_lookups_total\{result="(\w+)"\} (\S+)$', text, re.MULTILINE)
    return {result: float(count) for result, count in found}


def test_revoked_key_is_401_within_the_cache_bound(db_url, tenant, key):
    key_id, token = key
    app = make_app(db_url, STET_AUTH_CACHE_SECONDS="1")
    client = app.test_client()
    try:
        assert client.get(f"/v1/facts?{read_query()}", headers=_auth(tenant, token)).status_code == 200
        with connect(db_url) as conn, conn.cursor() as cursor:
            cursor.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = %s", (key_id,))
        time.sleep(1.1)
        assert client.get(f"/v1/facts?{read_query()}", headers=_auth(tenant, token)).status_code == 401
    finally:
        app.extensions["stet_pool"].close()


def test_a_known_key_is_looked_up_once_per_cache_period(db_url, tenant, key):
    app = make_app(db_url)
    client = app.test_client()
    try:
        for _ in range(20):
            assert client.get(f"/v1/facts?{read_query()}", headers=_auth(tenant, key[1])).status_code == 200
        assert _lookups(client) == {"found": 1.0}
    finally:
        app.extensions["stet_pool"].close()


def test_known_keys_are_refreshed_whatever_the_lookup_budget(db_url, tenant):
    app = make_app(db_url, STET_AUTH_CACHE_SECONDS="1", STET_AUTH_UNKNOWN_KEY_LOOKUPS_PER_SECOND="1")
    client = app.test_client()
    tokens = [create_api_key(db_url, tenant)[1] for _ in range(3)]
    try:
        for token in tokens:  # first sight of each: within a budget of 1/s, spaced out
            assert client.get(f"/v1/facts?{read_query()}", headers=_auth(tenant, token)).status_code == 200
            time.sleep(1.05)
        # All three cache entries have expired: refreshing them does not draw on the budget.
        statuses = [
            client.get(f"/v1/facts?{read_query()}", headers=_auth(tenant, token)).status_code
            for token in tokens
        ]
        assert statuses == [200, 200, 200]
        assert "skipped" not in _lookups(client)
    finally:
        app.extensions["stet_pool"].close()


def test_random_tokens_cost_at_most_the_lookup_budget(db_url, tenant):
    app = make_app(db_url, STET_AUTH_UNKNOWN_KEY_LOOKUPS_PER_SECOND="2")
    client = app.test_client()
    started = time.monotonic()
    try:
        for _ in range(50):
            token = f"stet_{uuid.uuid4().hex}_{secrets.token_urlsafe(32)}"
            response = client.get(f"/v1/facts?{read_query()}", headers=_auth(tenant, token))
            assert response.status_code == 401
        elapsed = time.monotonic() - started
        lookups = _lookups(client)
        # A full bucket (2) plus what refilled meanwhile; the rest never reached the database.
        assert lookups.get("unknown", 0) <= 2 + 2 * elapsed
        assert lookups["skipped"] >= 50 - 2 - 2 * elapsed
    finally:
        app.extensions["stet_pool"].close()


def test_key_of_another_tenant_is_403_and_returns_no_data(secure, db_url, tenant, key):
    secure.post("/v1/corrections", json=correction(), headers=_auth(tenant, key[1]))
    intruder_tenant = str(uuid.uuid4())
    _, intruder_token = create_api_key(db_url, intruder_tenant)
    for method, path in [
        ("get", f"/v1/facts?{read_query()}"),
        ("get", f"/v1/history?{read_query()}"),
        ("get", "/v1/enforcement/escalation"),
        ("get", "/v1/enforcement/systems"),
    ]:
        response = getattr(secure, method)(path, headers=_auth(tenant, intruder_token))
        assert response.status_code == 403, path
        assert set(response.get_json()) == {"error"}
        assert response.get_json()["error"]["code"] == "FORBIDDEN"
    # With its own tenant id the intruder reads its own (empty) data only.
    own = secure.get(f"/v1/facts?{read_query()}", headers=_auth(intruder_tenant, intruder_token))
    assert own.get_json()["facts"] == []


def test_auth_is_checked_before_validation_and_tenant_still_required(secure, tenant, key):
    no_key = secure.post("/v1/corrections", data=b"{bad json", headers={"X-Tenant-Id": tenant})
    assert no_key.status_code == 401
    no_tenant = secure.get(f"/v1/facts?{read_query()}", headers={"Authorization": f"Bearer {key[1]}"})
    assert no_tenant.status_code == 400


def test_legacy_clients_with_only_a_tenant_header_work_when_auth_is_off(client, tenant):
    response = client.post("/v1/corrections", json=correction(), headers={"X-Tenant-Id": tenant})
    assert response.status_code == 201


# --- STET_AUTH_REQUIRED=false: X-Tenant-Id alone, only from the named client networks.


@pytest.fixture
def auth_off_app(db_url):
    app = make_app(
        db_url,
        STET_AUTH_REQUIRED="false",
        STET_UNAUTHENTICATED_NETWORKS="192.0.2.0/24",
        STET_RATE_LIMIT_WRITES_PER_MINUTE="0",
    )
    yield app
    app.extensions["stet_pool"].close()


def _from(address):
    return {"REMOTE_ADDR": address}


def test_auth_off_trusts_x_tenant_id_only_from_named_networks(auth_off_app, tenant):
    client = auth_off_app.test_client()
    headers = {"X-Tenant-Id": tenant}
    inside = client.post(
        "/v1/corrections", json=correction(), headers=headers, environ_base=_from("192.0.2.10")
    )
    assert inside.status_code == 201
    for outside in ("127.0.0.1", "198.51.100.7"):
        refused = client.get(f"/v1/facts?{read_query()}", headers=headers, environ_base=_from(outside))
        assert refused.status_code == 401
        assert refused.get_json()["error"]["code"] == "UNAUTHENTICATED"


def test_auth_off_still_checks_a_presented_key_and_its_scopes(auth_off_app, db_url, tenant):
    client = auth_off_app.test_client()
    _, enforcer = create_api_key(db_url, tenant, scopes=["enforce"])
    outside = _from("198.51.100.7")
    # Outside the named networks a key works as with auth on...
    heartbeat = {"system_id": "s", "enforced_correction_version": "2026-01-01T00:00:00Z"}
    ok = client.post(
        "/v1/enforcement/heartbeat", json=heartbeat, headers=_auth(tenant, enforcer), environ_base=outside
    )
    assert ok.status_code == 201
    # ...and inside them a presented key is not bypassed: its scopes still apply.
    refused = client.get(
        f"/v1/facts?{read_query()}", headers=_auth(tenant, enforcer), environ_base=_from("192.0.2.10")
    )
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "MISSING_SCOPE"


def test_auth_off_behind_a_trusted_proxy_uses_the_forwarded_client(auth_off_app, tenant):
    client = auth_off_app.test_client()
    headers = {"X-Tenant-Id": tenant}
    forwarded_inside = {**headers, "X-Forwarded-For": "192.0.2.10"}
    forwarded_outside = {**headers, "X-Forwarded-For": "198.51.100.7"}
    url = f"/v1/facts?{read_query()}"
    assert client.get(url, headers=forwarded_inside, environ_base=_from("127.0.0.1")).status_code == 200
    assert client.get(url, headers=forwarded_outside, environ_base=_from("127.0.0.1")).status_code == 401


def test_auth_off_is_logged_loudly_at_start(db_url, caplog):
    with caplog.at_level("WARNING", logger="stet_api"):
        app = make_app(db_url, STET_AUTH_REQUIRED="false", STET_UNAUTHENTICATED_NETWORKS="192.0.2.0/24")
    app.extensions["stet_pool"].close()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("STET_AUTH_REQUIRED=false" in w and "192.0.2.0/24" in w for w in warnings), warnings


def test_auth_on_logs_no_such_warning(db_url, caplog):
    with caplog.at_level("WARNING", logger="stet_api"):
        app = make_app(db_url)
    app.extensions["stet_pool"].close()
    assert not [r for r in caplog.records if "STET_AUTH_REQUIRED" in r.getMessage()]
