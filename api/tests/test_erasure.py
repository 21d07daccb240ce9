"""Revoke with erase: the value is scrubbed from the row and from history (also with
include_revoked=true), the request's payload hash too; everything else stays for audit."""

from __future__ import annotations

import json

from helpers import connect, correction, read_query

SECRET_VALUE = "HIV positive, diagnosed 2024-03-02"


def _revoke(client, headers, correction_id, **extra):
    return client.post(
        f"/v1/corrections/{correction_id}/revoke",
        json={"reason": "GDPR erasure request", "actor": {"type": "operator", "id": "dpo"}, **extra},
        headers=headers,
    )


def _stored(db_url, correction_id):
    with connect(db_url) as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT c.value, c.status, c.erased_at, i.payload_hash, row_to_json(c)::text"
            " FROM corrections c JOIN idempotency i USING (tenant_id, correction_id)"
            " WHERE c.correction_id = %s",
            (correction_id,),
        )
        return cursor.fetchone()


def _history_values(client, headers):
    query = read_query(include_revoked="true")
    return [row["value"] for row in client.get(f"/v1/history?{query}", headers=headers).get_json()["history"]]


def test_revoke_without_erase_keeps_the_value_for_the_audit_view(client, headers, db_url):
    created = client.post("/v1/corrections", json=correction(value=SECRET_VALUE), headers=headers).get_json()
    revoked = _revoke(client, headers, created["correction_id"]).get_json()
    assert revoked["erased_at"] is None
    assert _history_values(client, headers) == [SECRET_VALUE]
    assert _stored(db_url, created["correction_id"])[0] == SECRET_VALUE


def test_erase_scrubs_the_value_from_the_table_and_from_history(client, headers, db_url):
    body = correction(value={"diagnosis": SECRET_VALUE})
    created = client.post("/v1/corrections", json=body, headers=headers).get_json()
    response = _revoke(client, headers, created["correction_id"], erase=True)
    assert response.status_code == 200
    revoked = response.get_json()
    assert revoked["status"] == "REVOKED"
    assert revoked["erased_at"] is not None

    value, status, erased_at, payload_hash, whole_row = _stored(db_url, created["correction_id"])
    assert (value, status) == (None, "REVOKED")
    assert erased_at is not None
    assert payload_hash == "erased"
    assert SECRET_VALUE not in whole_row
    history = client.get(f"/v1/history?{read_query(include_revoked='true')}", headers=headers).get_json()
    assert [(row["value"], row["status"]) for row in history["history"]] == [(None, "REVOKED")]
    assert history["history"][0]["erased_at"] == revoked["erased_at"]
    assert SECRET_VALUE not in json.dumps(history)
    # A retry of the original write cannot be matched against the value any more.
    replay = client.post("/v1/corrections", json=body, headers=headers)
    assert replay.status_code == 409
    assert replay.get_json()["error"]["code"] == "IDEMPOTENCY_CONFLICT"


def test_an_already_revoked_correction_can_be_erased_and_erasing_again_changes_nothing(
    client, headers, db_url
):
    created = client.post("/v1/corrections", json=correction(value=SECRET_VALUE), headers=headers).get_json()
    first = _revoke(client, headers, created["correction_id"]).get_json()
    erased = _revoke(client, headers, created["correction_id"], erase=True).get_json()
    assert {k: v for k, v in erased.items() if k != "erased_at"} == {
        k: v for k, v in first.items() if k != "erased_at"
    }
    again = _revoke(client, headers, created["correction_id"], erase=True).get_json()
    assert again == erased
    assert _stored(db_url, created["correction_id"])[0] is None
    assert _history_values(client, headers) == [None]


def test_erasing_one_correction_leaves_the_others_alone(client, headers, db_url):
    kept = client.post("/v1/corrections", json=correction(value="sesame"), headers=headers).get_json()
    erased = client.post(
        "/v1/corrections",
        json=correction(value=SECRET_VALUE, supersedes=kept["correction_id"]),
        headers=headers,
    ).get_json()
    _revoke(client, headers, erased["correction_id"], erase=True)
    assert _stored(db_url, kept["correction_id"])[0] == "sesame"
    assert _history_values(client, headers) == [None, "sesame"]


def test_erase_must_be_a_boolean(client, headers):
    created = client.post("/v1/corrections", json=correction(), headers=headers).get_json()
    response = _revoke(client, headers, created["correction_id"], erase="yes")
    assert response.status_code == 400
    assert response.get_json()["error"]["details"] == {"field": "erase"}
    assert _history_values(client, headers) == ["peanuts"]  # still ACTIVE, nothing revoked
