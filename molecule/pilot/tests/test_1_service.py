"""The pilot serves the STET API over HTTPS as the guide's pilot would, built by site.yml."""

from __future__ import annotations

import uuid

from conftest import API_HOST, CLIENT, DB_HOST, MONITORING_TENANT, ROOT_CA, SITE, api, run_ok


def test_https_answers_with_the_certificate_pebble_issued(client):
    issuer = run_ok(
        CLIENT,
        f"echo | openssl s_client -connect {API_HOST}:443 -servername {API_HOST} -CAfile {ROOT_CA}"
        " -verify_return_error 2>/dev/null | openssl x509 -noout -issuer",
    )
    assert "Pebble" in issuer
    status, body = api("GET", "/health")
    assert (status, body) == (200, {"status": "ok"})
    status, body = api("GET", "/ready")
    assert status == 200, body


def test_plain_http_redirects_to_https_keeping_the_path_and_query(client):
    location = run_ok(
        CLIENT, f"curl -s -o /dev/null -w '%{{http_code}} %{{redirect_url}}' 'http://{API_HOST}/v1/x?y=1'"
    )
    assert location == f"301 {SITE}/v1/x?y=1"


def test_a_correction_is_a_fact_for_an_allowed_reader_only(client):
    subject = f"pilot-{uuid.uuid4()}"
    status, created = api(
        "POST",
        "/v1/corrections",
        {
            "subject": {"type": "user", "id": subject},
            "field_key": "allergy",
            "value": {"substance": "peanuts", "severity": "high"},
            "class": "FACT",
            "permissions": {"readers": ["assistant"], "deny_list": ["intruder"]},
            "actor": {"type": "user", "id": subject},
            "idempotency_key": str(uuid.uuid4()),
        },
    )
    assert status == 201, created
    assert created["status"] == "ACTIVE"

    query = f"/v1/facts?subject_type=user&subject_id={subject}&requester_id="
    status, allowed = api("GET", query + "assistant")
    assert status == 200
    assert [(f["field_key"], f["value"]) for f in allowed["facts"]] == [
        ("allergy", {"substance": "peanuts", "severity": "high"})
    ]
    status, denied = api("GET", query + "intruder")
    assert (status, denied["facts"]) == (200, [])


def test_a_request_without_the_tenants_key_gets_no_data(client):
    run_ok(CLIENT, f"printf 'X-Tenant-Id: {MONITORING_TENANT}\\n' > /tmp/no-key.headers")
    status, body = api("GET", "/v1/enforcement/status", headers="/tmp/no-key.headers")
    assert status == 401
    assert body["error"]["code"] == "UNAUTHENTICATED"


def test_escalation_is_critical_for_a_missing_system_and_none_once_it_reports(client):
    system = f"pilot-{uuid.uuid4().hex[:8]}"
    assert api("PUT", f"/v1/enforcement/systems/{system}")[0] in (200, 201)
    try:
        status, escalation = api("GET", "/v1/enforcement/escalation")
        assert (status, escalation["escalation"]) == (200, "CRITICAL")
        assert system in str(escalation["affected_systems"])
        status, _ = api(
            "POST",
            "/v1/enforcement/heartbeat",
            {"system_id": system, "enforced_correction_version": "2026-11-25T00:00:00Z"},
        )
        assert status == 201
        assert api("GET", "/v1/enforcement/escalation")[1]["escalation"] == "NONE"
    finally:
        assert api("DELETE", f"/v1/enforcement/systems/{system}")[0] == 204


def test_only_the_api_host_reaches_the_database(client):
    # PgBouncer (6432) and PostgreSQL (5432) on the database host: the API host gets in,
    # the client host (not an API host) is refused by the firewall.
    probe = "timeout 5 bash -c 'exec 3<>/dev/tcp/{}/{}' && echo open || echo closed"
    for port in (5432, 6432):
        assert run_ok(CLIENT, probe.format(DB_HOST, port)).strip() == "closed"
    assert run_ok(API_HOST, probe.format(DB_HOST, 6432)).strip() == "open"
