"""Rate limits per key on writes, heartbeats and reads, shared by every worker and host."""

from __future__ import annotations

import time

import pytest
from conftest import make_app
from helpers import correction, create_api_key, read_query

LIMIT = 3


@pytest.fixture(scope="module")
def limited_apps(db_url):
    """Two app instances on one database: two workers (or hosts) behind one limit."""
    apps = [make_app(db_url, STET_RATE_LIMIT_WRITES_PER_MINUTE=str(LIMIT)) for _ in range(2)]
    yield apps
    for app in apps:
        app.extensions["stet_pool"].close()


def _post(app, tenant, token, **environ):
    headers = {"X-Tenant-Id": tenant, "Authorization": f"Bearer {token}"}
    return app.test_client().post("/v1/corrections", json=correction(), headers=headers, environ_base=environ)


def test_limit_is_shared_across_instances_with_real_headers(limited_apps, db_url, tenant):
    _, token = create_api_key(db_url, tenant)
    responses = [_post(limited_apps[i % 2], tenant, token) for i in range(LIMIT + 1)]
    assert [r.status_code for r in responses[:LIMIT]] == [201] * LIMIT
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["2", "1", "0", "0"]
    assert all(r.headers["X-RateLimit-Limit"] == str(LIMIT) for r in responses)
    reset = int(responses[0].headers["X-RateLimit-Reset"])
    assert time.time() - 1 <= reset <= time.time() + 61
    limited = responses[LIMIT]
    assert limited.status_code == 429
    assert limited.get_json()["error"]["code"] == "RATE_LIMITED"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60


def test_each_key_has_its_own_budget(limited_apps, db_url, tenant):
    _, first = create_api_key(db_url, tenant)
    _, second = create_api_key(db_url, tenant)
    for _ in range(LIMIT):
        _post(limited_apps[0], tenant, first)
    assert _post(limited_apps[0], tenant, first).status_code == 429
    assert _post(limited_apps[1], tenant, second).status_code != 429


def test_without_keys_clients_are_told_apart_by_address(db_url, tenant):
    app = make_app(
        db_url,
        STET_AUTH_REQUIRED="false",
        STET_UNAUTHENTICATED_NETWORKS="127.0.0.0/8,203.0.113.0/24,198.51.100.0/24",
        STET_RATE_LIMIT_WRITES_PER_MINUTE="1",
    )
    client = app.test_client()
    headers = {"X-Tenant-Id": tenant}

    def post(remote, forwarded=None):
        extra = {"X-Forwarded-For": forwarded} if forwarded else {}
        environ = {"REMOTE_ADDR": remote}
        return client.post(
            "/v1/corrections", json=correction(), headers={**headers, **extra}, environ_base=environ
        )

    try:
        assert post("127.0.0.1", "203.0.113.7").status_code == 201
        # Behind the trusted proxy, a different forwarded client has its own budget...
        assert post("127.0.0.1", "203.0.113.8").status_code != 429
        assert post("127.0.0.1", "203.0.113.7").status_code == 429
        # ...but an untrusted peer cannot pick a budget by forging X-Forwarded-For.
        assert post("198.51.100.1", "203.0.113.99").status_code != 429
        assert post("198.51.100.1", "203.0.113.100").status_code == 429
    finally:
        app.extensions["stet_pool"].close()


def _away_from_a_window_edge() -> None:
    """Start where the one-minute window cannot roll over during the test."""
    into = time.time() % 60
    if into > 55:
        time.sleep(60 - into + 0.2)


def _facts(app, tenant, token):
    headers = {"X-Tenant-Id": tenant, "Authorization": f"Bearer {token}"}
    return app.test_client().get(f"/v1/facts?{read_query()}", headers=headers)


def test_reads_are_limited_per_key_and_counted_across_instances(db_url, tenant):
    apps = [make_app(db_url, STET_RATE_LIMIT_READS_PER_MINUTE=str(LIMIT)) for _ in range(2)]
    _, token = create_api_key(db_url, tenant)
    _, other_token = create_api_key(db_url, tenant)
    try:
        _away_from_a_window_edge()
        answers = [_facts(apps[0], tenant, token) for _ in range(LIMIT + 1)]
        assert [r.status_code for r in answers] == [200] * LIMIT + [429]
        assert [r.headers["X-RateLimit-Remaining"] for r in answers] == ["2", "1", "0", "0"]
        assert answers[-1].get_json()["error"]["code"] == "RATE_LIMITED"
        assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60
        # Each instance adds its hits to the shared window at most once a second: once both
        # have synced, the other instance refuses this key too.
        time.sleep(1.1)
        assert _facts(apps[0], tenant, token).status_code == 429
        assert _facts(apps[1], tenant, token).status_code == 429
        # Another key has its own budget.
        assert _facts(apps[1], tenant, other_token).status_code == 200
    finally:
        for app in apps:
            app.extensions["stet_pool"].close()


def test_heartbeats_have_their_own_budget(db_url, tenant):
    app = make_app(db_url, STET_RATE_LIMIT_HEARTBEATS_PER_MINUTE="2")
    _, token = create_api_key(db_url, tenant)
    headers = {"X-Tenant-Id": tenant, "Authorization": f"Bearer {token}"}
    beat = {"system_id": "billing", "enforced_correction_version": "2026-01-01T00:00:00Z"}
    client = app.test_client()
    try:
        _away_from_a_window_edge()
        statuses = [
            client.post("/v1/enforcement/heartbeat", json=beat, headers=headers).status_code for _ in range(3)
        ]
        assert statuses == [201, 201, 429]
        # Reads and writes of the same key are not charged for the heartbeats.
        assert _facts(app, tenant, token).status_code == 200
        assert client.post("/v1/corrections", json=correction(), headers=headers).status_code == 201
    finally:
        app.extensions["stet_pool"].close()


def test_every_write_counts_against_the_write_budget(db_url, tenant):
    app = make_app(db_url, STET_RATE_LIMIT_WRITES_PER_MINUTE="2")
    _, token = create_api_key(db_url, tenant)
    headers = {"X-Tenant-Id": tenant, "Authorization": f"Bearer {token}"}
    client = app.test_client()
    try:
        _away_from_a_window_edge()
        assert client.put("/v1/enforcement/systems/billing", headers=headers).status_code == 201
        assert client.delete("/v1/enforcement/systems/billing", headers=headers).status_code == 204
        limited = client.post("/v1/corrections", json=correction(), headers=headers)
        assert limited.status_code == 429
    finally:
        app.extensions["stet_pool"].close()
