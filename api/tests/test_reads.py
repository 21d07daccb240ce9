"""GET /v1/facts and /v1/history: permission-first filtering and tenant isolation."""

from __future__ import annotations

import uuid

import pytest
from conftest import make_app
from helpers import correction, read_query


def _write(client, headers, **fields):
    response = client.post("/v1/corrections", json=correction(**fields), headers=headers)
    assert response.status_code == 201
    return response.get_json()


def _fact_keys(client, headers, **query):
    response = client.get(f"/v1/facts?{read_query(**query)}", headers=headers)
    assert response.status_code == 200
    return [fact["field_key"] for fact in response.get_json()["facts"]]


@pytest.fixture
def permissioned(client, headers):
    _write(client, headers, field_key="by_reader", permissions={"readers": ["assistant"]})
    _write(client, headers, field_key="by_scope", permissions={"scopes": ["medical"]})
    _write(
        client,
        headers,
        field_key="denied",
        permissions={"readers": ["assistant"], "deny_list": ["assistant"]},
    )
    _write(
        client,
        headers,
        field_key="scope_but_denied",
        permissions={"scopes": ["medical"], "deny_list": ["nurse"]},
    )
    _write(client, headers, field_key="discardable", **{"class": "DISCARDABLE"})


def test_reader_sees_its_facts_but_not_denied_or_discardable(client, headers, permissioned):
    assert _fact_keys(client, headers) == ["by_reader"]


def test_scope_grants_and_deny_list_overrides_scope(client, headers, permissioned):
    assert _fact_keys(client, headers, requester_id="doctor", requester_scopes="medical") == [
        "by_scope",
        "scope_but_denied",
    ]
    assert _fact_keys(client, headers, requester_id="nurse", requester_scopes="medical,other") == ["by_scope"]


def test_unknown_requester_sees_nothing(client, headers, permissioned):
    assert _fact_keys(client, headers, requester_id="stranger") == []


def test_field_keys_filter(client, headers):
    for key in ("a", "b", "c"):
        _write(client, headers, field_key=key)
    assert _fact_keys(client, headers, field_keys="a,c") == ["a", "c"]


def test_facts_response_shape(client, headers):
    created = _write(client, headers, value={"level": 3})
    body = client.get(f"/v1/facts?{read_query()}", headers=headers).get_json()
    assert body == {
        "subject": {"type": "user", "id": "u-1"},
        "facts": [
            {
                "field_key": "allergy",
                "value": {"level": 3},
                "corrected_at": created["created_at"],
                "correction_id": created["correction_id"],
                "actor": {"type": "user", "id": "u-1"},
            }
        ],
    }


def test_history_is_newest_first_filtered_by_permission_and_field(client, headers):
    _write(client, headers, value="one")
    _write(client, headers, value="two")
    _write(client, headers, field_key="diet", value="vegan")
    _write(client, headers, field_key="secret", permissions={"readers": ["someone-else"]})
    history = client.get(f"/v1/history?{read_query()}", headers=headers).get_json()["history"]
    assert [(row["field_key"], row["value"], row["status"]) for row in history] == [
        ("diet", "vegan", "ACTIVE"),
        ("allergy", "two", "ACTIVE"),
        ("allergy", "one", "SUPERSEDED"),
    ]
    only_allergy = client.get(f"/v1/history?{read_query(field_key='allergy')}", headers=headers).get_json()
    assert [row["value"] for row in only_allergy["history"]] == ["two", "one"]


def test_tenant_b_never_sees_tenant_a_without_keys(client, headers):
    _write(client, headers)
    other = {"X-Tenant-Id": str(uuid.uuid4())}
    assert client.get(f"/v1/facts?{read_query()}", headers=other).get_json()["facts"] == []
    assert client.get(f"/v1/history?{read_query()}", headers=other).get_json()["history"] == []


@pytest.mark.parametrize("endpoint", ["/v1/facts", "/v1/history"])
@pytest.mark.parametrize(
    "query",
    [
        "subject_id=u&requester_id=r",
        "subject_type=user&requester_id=r",
        "subject_type=user&subject_id=u",
        "subject_type=&subject_id=u&requester_id=r",
        "subject_type=user&subject_id=u&requester_id=r%00",
    ],
)
def test_missing_or_bad_query_parameters_are_400(client, headers, endpoint, query):
    response = client.get(f"{endpoint}?{query}", headers=headers)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "VALIDATION_ERROR"


def test_include_revoked_must_be_a_boolean(client, headers):
    response = client.get(f"/v1/history?{read_query(include_revoked='maybe')}", headers=headers)
    assert response.status_code == 400
    assert response.get_json()["error"]["details"] == {"field": "include_revoked"}


def _history(client, headers, **extra):
    return client.get(f"/v1/history?{read_query(subject_id='paged', **extra)}", headers=headers)


def test_history_pages_with_a_bounded_size_and_a_cursor(db_url, tenant):
    app = make_app(
        db_url,
        STET_AUTH_REQUIRED="false",
        STET_UNAUTHENTICATED_NETWORKS="127.0.0.0/8",
        STET_HISTORY_PAGE_MAX="3",
    )
    client = app.test_client()
    headers = {"X-Tenant-Id": tenant}
    try:
        for n in range(7):
            body = correction(subject={"type": "user", "id": "paged"}, field_key=f"f{n % 2}", value=n)
            assert client.post("/v1/corrections", json=body, headers=headers).status_code == 201
        full = _history(client, headers)
        assert len(full.get_json()["history"]) == 3
        assert full.get_json()["next_cursor"]
        seen, cursor = [], None
        while True:
            page = _history(client, headers, limit="2", **({"cursor": cursor} if cursor else {})).get_json()
            assert len(page["history"]) <= 2
            seen += [row["value"] for row in page["history"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [6, 5, 4, 3, 2, 1, 0]
        assert _history(client, headers, limit="4").status_code == 400
        assert _history(client, headers, limit="0").status_code == 400
        bad = _history(client, headers, cursor="bm90IGEgY3Vyc29y")
        assert bad.status_code == 400
        assert bad.get_json()["error"]["details"] == {"field": "cursor"}
    finally:
        app.extensions["stet_pool"].close()


def test_facts_and_history_write_the_same_timestamp(client, headers):
    client.post("/v1/corrections", json=correction(), headers=headers)
    fact = client.get(f"/v1/facts?{read_query()}", headers=headers).get_json()["facts"][0]
    (entry,) = client.get(f"/v1/history?{read_query()}", headers=headers).get_json()["history"]
    assert fact["corrected_at"] == entry["created_at"]
