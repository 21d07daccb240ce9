"""Heartbeats, per-system status, escalation and the expected-systems registry."""

from __future__ import annotations

import uuid

import pytest
from helpers import connect

VERSION = "2026-01-01T12:00:00+00:00"


def _beat(client, headers, system_id, version=VERSION):
    return client.post(
        "/v1/enforcement/heartbeat",
        json={"system_id": system_id, "enforced_correction_version": version},
        headers=headers,
    )


def _age_heartbeats(db_url, tenant, system_id, seconds):
    with connect(db_url) as conn, conn.cursor() as cursor:
        cursor.execute(
            "UPDATE enforcement_heartbeats SET reported_at = now() - make_interval(secs => %s)"
            " WHERE tenant_id = %s AND system_id = %s",
            (seconds, tenant, system_id),
        )


def test_heartbeat_is_stored_with_origin(client, headers, db_url, tenant):
    response = _beat(client, headers, "gateway")
    assert response.status_code == 201
    body = response.get_json()
    assert body["system_id"] == "gateway"
    assert body["enforced_correction_version"] == VERSION
    with connect(db_url) as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT origin FROM enforcement_heartbeats WHERE heartbeat_id = %s", (body["heartbeat_id"],)
        )
        assert cursor.fetchone()[0]["environment"] == "test"


def test_status_ok_then_stale_after_interval_times_grace(client, headers, db_url, tenant):
    _beat(client, headers, "gateway")
    status = client.get("/v1/enforcement/status", headers=headers).get_json()
    assert status["heartbeat_interval_seconds"] == 60
    assert status["heartbeat_grace_multiplier"] == 2
    assert [(s["system_id"], s["status"]) for s in status["systems"]] == [("gateway", "OK")]
    _age_heartbeats(db_url, tenant, "gateway", 119)
    assert client.get("/v1/enforcement/status", headers=headers).get_json()["systems"][0]["status"] == "OK"
    _age_heartbeats(db_url, tenant, "gateway", 121)
    assert client.get("/v1/enforcement/status", headers=headers).get_json()["systems"][0]["status"] == "STALE"


def test_status_reports_the_latest_heartbeat_per_system(client, headers, db_url, tenant):
    _beat(client, headers, "gateway", "2026-01-01T00:00:00+00:00")
    _age_heartbeats(db_url, tenant, "gateway", 500)
    _beat(client, headers, "gateway", "2026-02-01T00:00:00+00:00")
    systems = client.get("/v1/enforcement/status", headers=headers).get_json()["systems"]
    assert len(systems) == 1
    assert systems[0]["status"] == "OK"
    assert systems[0]["enforced_correction_version"] == "2026-02-01T00:00:00+00:00"


def test_named_system_that_never_reported_is_missing(client, headers):
    systems = client.get("/v1/enforcement/status?system_id=ghost", headers=headers).get_json()["systems"]
    assert systems == [
        {"system_id": "ghost", "status": "MISSING", "enforced_correction_version": None, "reported_at": None}
    ]


def test_escalation_levels(client, headers, db_url, tenant):
    def escalation():
        return client.get("/v1/enforcement/escalation", headers=headers).get_json()

    empty = escalation()
    assert empty["escalation"] == "NONE"
    assert empty["summary"] == {"total_systems": 0, "ok": 0, "stale": 0, "missing": 0}
    assert empty["tenant_id"] == tenant
    _beat(client, headers, "a")
    _beat(client, headers, "b")
    assert escalation()["escalation"] == "NONE"
    _age_heartbeats(db_url, tenant, "b", 3600)
    warn = escalation()
    assert warn["escalation"] == "WARN"
    assert [s["system_id"] for s in warn["affected_systems"]] == ["b"]
    client.put("/v1/enforcement/systems/never-reported", headers=headers)
    critical = escalation()
    assert critical["escalation"] == "CRITICAL"
    assert critical["summary"] == {"total_systems": 3, "ok": 1, "stale": 1, "missing": 1}
    assert {s["system_id"]: s["status"] for s in critical["affected_systems"]} == {
        "b": "STALE",
        "never-reported": "MISSING",
    }


def _level_gauge(client, tenant):
    for line in client.get("/metrics").get_data(as_text=True).splitlines():
        if line.startswith(f'stet_escalation_level{{tenant_id="{tenant}"}} '):
            return float(line.split()[-1])
    return None


def test_the_tenant_level_is_a_gauge_set_by_unfiltered_evaluations(client, headers, db_url, tenant):
    _beat(client, headers, "a")
    client.get("/v1/enforcement/escalation", headers=headers)
    assert _level_gauge(client, tenant) == 0
    client.put("/v1/enforcement/systems/never-reported", headers=headers)
    client.get("/v1/enforcement/status", headers=headers)
    assert _level_gauge(client, tenant) == 2
    # A read about one system says nothing about the tenant's fleet: the gauge stays.
    assert (
        client.get("/v1/enforcement/escalation?system_id=a", headers=headers).get_json()["escalation"]
        == "NONE"
    )
    assert _level_gauge(client, tenant) == 2
    client.delete("/v1/enforcement/systems/never-reported", headers=headers)
    _age_heartbeats(db_url, tenant, "a", 3600)
    client.get("/v1/enforcement/escalation", headers=headers)
    assert _level_gauge(client, tenant) == 1


def test_escalation_for_one_named_system(client, headers):
    _beat(client, headers, "a")
    assert (
        client.get("/v1/enforcement/escalation?system_id=a", headers=headers).get_json()["escalation"]
        == "NONE"
    )
    named_missing = client.get("/v1/enforcement/escalation?system_id=zzz", headers=headers).get_json()
    assert named_missing["escalation"] == "CRITICAL"
    assert named_missing["summary"]["total_systems"] == 1


def test_expected_systems_registry(client, headers):
    assert client.put("/v1/enforcement/systems/edge", headers=headers).status_code == 201
    assert client.put("/v1/enforcement/systems/edge", headers=headers).status_code == 200
    listed = client.get("/v1/enforcement/systems", headers=headers).get_json()["systems"]
    assert [s["system_id"] for s in listed] == ["edge"]
    assert client.delete("/v1/enforcement/systems/edge", headers=headers).status_code == 204
    missing = client.delete("/v1/enforcement/systems/edge", headers=headers)
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "NOT_FOUND"
    assert client.get("/v1/enforcement/systems", headers=headers).get_json()["systems"] == []


def test_systems_and_heartbeats_are_per_tenant(client, headers):
    client.put("/v1/enforcement/systems/edge", headers=headers)
    _beat(client, headers, "gateway")
    other = {"X-Tenant-Id": str(uuid.uuid4())}
    assert client.get("/v1/enforcement/systems", headers=other).get_json()["systems"] == []
    assert client.get("/v1/enforcement/status", headers=other).get_json()["systems"] == []
    assert client.get("/v1/enforcement/escalation", headers=other).get_json()["escalation"] == "NONE"


@pytest.mark.parametrize(
    "body",
    [
        {"system_id": "a"},
        {"system_id": "a", "enforced_correction_version": "yesterday"},
        {"system_id": "a", "enforced_correction_version": "2026-01-01T00:00:00"},
        {"system_id": 3, "enforced_correction_version": VERSION},
        {"system_id": "a", "enforced_correction_version": VERSION, "extra": True},
    ],
)
def test_invalid_heartbeats_are_400(client, headers, body):
    response = client.post("/v1/enforcement/heartbeat", json=body, headers=headers)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "VALIDATION_ERROR"


def test_system_id_longer_than_limit_is_400(client, headers):
    assert client.put(f"/v1/enforcement/systems/{'s' * 256}", headers=headers).status_code == 400


@pytest.mark.parametrize("version", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-02:00"])
def test_a_version_outside_years_1_to_9999_utc_is_refused_at_the_edge(client, headers, version):
    response = _beat(client, headers, "gateway", version)
    assert response.status_code == 400
    assert response.get_json()["error"]["details"] == {"field": "enforced_correction_version"}


def test_a_bc_era_version_already_stored_does_not_break_status_or_escalation(client, headers, db_url, tenant):
    assert _beat(client, headers, "ancient").status_code == 201
    with connect(db_url) as conn, conn.cursor() as cursor:
        cursor.execute(
            "UPDATE enforcement_heartbeats SET enforced_correction_version = '0001-12-31 23:00:00+00 BC'"
            " WHERE tenant_id = %s AND system_id = 'ancient'",
            (tenant,),
        )
    status = client.get("/v1/enforcement/status", headers=headers)
    assert status.status_code == 200
    (system,) = status.get_json()["systems"]
    assert system["status"] == "OK"
    assert system["enforced_correction_version"].endswith(" BC")
    escalation = client.get("/v1/enforcement/escalation", headers=headers)
    assert escalation.status_code == 200
    assert escalation.get_json()["escalation"] == "NONE"


def test_an_offset_postgresql_cannot_store_is_handed_on_in_utc(client, headers):
    """Found by the schemathesis run: +16:00 is valid ISO 8601 but past PostgreSQL's ±15:59."""
    response = _beat(client, headers, "far-east", "2000-01-01T00:00:00+16:00")
    assert response.status_code == 201
    assert response.get_json()["enforced_correction_version"] == "1999-12-31T08:00:00+00:00"
