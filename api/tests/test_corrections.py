"""POST /v1/corrections and revoke: the write contract, idempotency, validation."""

from __future__ import annotations

import json
import uuid

import pytest
from helpers import connect, correction, read_query


def test_new_correction_is_active_and_supersedes_nothing(client, headers):
    response = client.post("/v1/corrections", json=correction(), headers=headers)
    assert response.status_code == 201
    body = response.get_json()
    assert body["status"] == "ACTIVE"
    assert body["supersedes"] is None
    assert uuid.UUID(body["correction_id"])
    assert body["created_at"].startswith("20")


def test_second_correction_supersedes_the_first(client, headers):
    first = client.post("/v1/corrections", json=correction(value="peanuts"), headers=headers).get_json()
    second = client.post("/v1/corrections", json=correction(value="shellfish"), headers=headers)
    assert second.status_code == 201
    assert second.get_json()["supersedes"] == first["correction_id"]
    history = client.get(f"/v1/history?{read_query()}", headers=headers).get_json()["history"]
    assert [(row["value"], row["status"]) for row in history] == [
        ("shellfish", "ACTIVE"),
        ("peanuts", "SUPERSEDED"),
    ]


def test_same_key_same_payload_replays_the_original_response(client, headers):
    body = correction()
    created = client.post("/v1/corrections", json=body, headers=headers)
    # Key order differs: the payload hash is over canonical JSON.
    replay = client.post("/v1/corrections", data=json.dumps(dict(reversed(body.items()))), headers=headers)
    assert replay.status_code == 200
    assert replay.get_json() == created.get_json()
    history = client.get(f"/v1/history?{read_query()}", headers=headers).get_json()["history"]
    assert len(history) == 1


def test_same_key_different_payload_is_an_idempotency_conflict(client, headers):
    body = correction()
    client.post("/v1/corrections", json=body, headers=headers)
    response = client.post("/v1/corrections", json={**body, "value": "other"}, headers=headers)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "IDEMPOTENCY_CONFLICT"


def test_idempotency_keys_are_per_tenant(client, headers):
    body = correction()
    first = client.post("/v1/corrections", json=body, headers=headers).get_json()
    other = client.post("/v1/corrections", json=body, headers={"X-Tenant-Id": str(uuid.uuid4())})
    assert other.status_code == 201
    assert other.get_json()["correction_id"] != first["correction_id"]


def test_explicit_supersedes_of_the_active_correction(client, headers):
    first = client.post("/v1/corrections", json=correction(), headers=headers).get_json()
    response = client.post(
        "/v1/corrections", json=correction(value="soy", supersedes=first["correction_id"]), headers=headers
    )
    assert response.status_code == 201
    assert response.get_json()["supersedes"] == first["correction_id"]


@pytest.mark.parametrize("target", ["superseded", "unknown", "other_field", "other_tenant"])
def test_explicit_supersedes_must_name_an_active_correction_of_the_field(client, headers, target):
    first = client.post("/v1/corrections", json=correction(), headers=headers).get_json()
    client.post("/v1/corrections", json=correction(value="soy"), headers=headers)
    other_field = client.post(
        "/v1/corrections", json=correction(field_key="diet"), headers=headers
    ).get_json()
    foreign = client.post("/v1/corrections", json=correction(), headers={"X-Tenant-Id": str(uuid.uuid4())})
    supersedes = {
        "superseded": first["correction_id"],
        "unknown": str(uuid.uuid4()),
        "other_field": other_field["correction_id"],
        "other_tenant": foreign.get_json()["correction_id"],
    }[target]
    response = client.post("/v1/corrections", json=correction(supersedes=supersedes), headers=headers)
    assert response.status_code == 400
    assert response.get_json()["error"]["details"] == {"field": "supersedes"}


@pytest.mark.parametrize(
    "value", ["peanuts", 42, 3.5, True, None, {"severity": "high", "items": [1, 2]}, [1, "two", False]]
)
def test_value_comes_back_as_the_json_value_itself(client, headers, value):
    client.post("/v1/corrections", json=correction(value=value), headers=headers)
    facts = client.get(f"/v1/facts?{read_query()}", headers=headers).get_json()["facts"]
    assert facts[0]["value"] == value
    assert type(facts[0]["value"]) is type(value)


def test_origin_is_recorded_from_configuration(client, headers, db_url):
    created = client.post("/v1/corrections", json=correction(), headers=headers).get_json()
    with connect(db_url) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT origin FROM corrections WHERE correction_id = %s", (created["correction_id"],))
        origin = cursor.fetchone()[0]
    assert origin == {"service": "stet-api", "version": "unknown", "environment": "test"}


VALID = correction()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**VALID, "extra": 1}, "body"),
        ({k: v for k, v in VALID.items() if k != "field_key"}, "body"),
        ({**VALID, "subject": {"type": "user"}}, "subject"),
        ({**VALID, "subject": {"type": "user", "id": "u", "x": 1}}, "subject"),
        ({**VALID, "subject": "user"}, "subject"),
        ({**VALID, "field_key": 7}, "field_key"),
        ({**VALID, "field_key": ""}, "field_key"),
        ({**VALID, "field_key": "x" * 256}, "field_key"),
        ({**VALID, "class": "OPINION"}, "class"),
        ({**VALID, "permissions": {}}, "permissions"),
        ({**VALID, "permissions": {"deny_list": ["x"]}}, "permissions"),
        ({**VALID, "permissions": {"readers": "assistant"}}, "permissions.readers"),
        ({**VALID, "permissions": {"readers": ["a"], "admins": ["b"]}}, "permissions"),
        ({**VALID, "actor": {"type": "user", "id": 5}}, "actor.id"),
        ({**VALID, "idempotency_key": None}, "idempotency_key"),
        ({**VALID, "supersedes": "not-a-uuid"}, "supersedes"),
        ({**VALID, "value": "nul\u0000byte"}, "value"),
        ({**VALID, "subject": {"type": "user", "id": "a\u0000"}}, "subject.id"),
        ([VALID], "body"),
    ],
)
def test_invalid_bodies_are_400_naming_the_field(client, headers, body, field):
    response = client.post("/v1/corrections", json=body, headers=headers)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"] == {"field": field}
    assert error["request_id"]


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b'{"value": NaN}', b"\xff\xfe", b"[" * 100_000, b'{"a": 1e400}', b""],
)
def test_malformed_json_is_400_invalid_json_or_validation(client, headers, raw):
    response = client.post("/v1/corrections", data=raw, headers=headers)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] in {"INVALID_JSON", "VALIDATION_ERROR"}


def test_deeply_nested_value_is_rejected(client, headers):
    value: list = []
    for _ in range(100):
        value = [value]
    response = client.post("/v1/corrections", json=correction(value=value), headers=headers)
    assert response.status_code == 400
    assert response.get_json()["error"]["details"] == {"field": "value"}


def test_oversized_body_is_413(client, headers):
    response = client.post("/v1/corrections", json=correction(value="x" * (1024 * 1024 + 1)), headers=headers)
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize("tenant_header", [None, "", "tenant-a", "123"])
def test_missing_or_malformed_tenant_is_400(client, tenant_header):
    headers = {} if tenant_header is None else {"X-Tenant-Id": tenant_header}
    response = client.post("/v1/corrections", json=correction(), headers=headers)
    assert response.status_code == 400
    assert response.get_json()["error"]["details"] == {"field": "X-Tenant-Id"}


def _revoke(client, headers, correction_id, reason="GDPR erasure request"):
    return client.post(
        f"/v1/corrections/{correction_id}/revoke",
        json={"reason": reason, "actor": {"type": "operator", "id": "dpo"}},
        headers=headers,
    )


def test_revoked_value_vanishes_from_facts_and_default_history(client, headers):
    created = client.post("/v1/corrections", json=correction(), headers=headers).get_json()
    response = _revoke(client, headers, created["correction_id"])
    assert response.status_code == 200
    revoked = response.get_json()
    assert revoked["status"] == "REVOKED"
    assert revoked["reason"] == "GDPR erasure request"
    assert revoked["revoked_by"] == {"type": "operator", "id": "dpo"}
    assert client.get(f"/v1/facts?{read_query()}", headers=headers).get_json()["facts"] == []
    assert client.get(f"/v1/history?{read_query()}", headers=headers).get_json()["history"] == []
    with_revoked = client.get(f"/v1/history?{read_query(include_revoked='true')}", headers=headers).get_json()
    assert [row["status"] for row in with_revoked["history"]] == ["REVOKED"]


def test_revoking_again_returns_the_same_record(client, headers):
    created = client.post("/v1/corrections", json=correction(), headers=headers).get_json()
    first = _revoke(client, headers, created["correction_id"]).get_json()
    again = _revoke(client, headers, created["correction_id"], reason="second request")
    assert again.status_code == 200
    assert again.get_json() == first


def test_field_can_be_corrected_again_after_revoke(client, headers):
    created = client.post("/v1/corrections", json=correction(), headers=headers).get_json()
    _revoke(client, headers, created["correction_id"])
    again = client.post("/v1/corrections", json=correction(value="sesame"), headers=headers)
    assert again.status_code == 201
    assert again.get_json()["supersedes"] is None


def test_revoke_of_unknown_or_foreign_correction_is_404(client, headers):
    foreign = client.post("/v1/corrections", json=correction(), headers={"X-Tenant-Id": str(uuid.uuid4())})
    for correction_id in (str(uuid.uuid4()), foreign.get_json()["correction_id"]):
        response = _revoke(client, headers, correction_id)
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("path_id", "body"),
    [
        ("not-a-uuid", {"reason": "r", "actor": {"type": "t", "id": "i"}}),
        (str(uuid.uuid4()), {"reason": "", "actor": {"type": "t", "id": "i"}}),
        (str(uuid.uuid4()), {"reason": "r"}),
        (str(uuid.uuid4()), {"reason": "r", "actor": {"type": "t", "id": "i"}, "force": True}),
    ],
)
def test_invalid_revoke_requests_are_400(client, headers, path_id, body):
    response = client.post(f"/v1/corrections/{path_id}/revoke", json=body, headers=headers)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "VALIDATION_ERROR"
