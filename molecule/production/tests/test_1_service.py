"""End to end through HTTPS on the load balancer: corrections, permission-first reads,
replication to the replica, and the enforcement escalation as heartbeats age."""

from __future__ import annotations

import json
import time
import uuid

from conftest import API_HOSTS, MONITOR, api, host, run_ok

SUBJECT = {"type": "user", "id": f"e2e-{uuid.uuid4().hex[:8]}"}


def facts_for(requester: str) -> list[dict]:
    status, body = api(
        "GET", f"/v1/facts?subject_type={SUBJECT['type']}&subject_id={SUBJECT['id']}&requester_id={requester}"
    )
    assert status == 200, body
    return body["facts"]


def test_load_balancer_serves_the_pebble_certificate_and_both_api_hosts(client):
    status, body = api("GET", "/health")
    assert (status, body) == (200, {"status": "ok"})
    upstream = run_ok("stet-prod-lb", "nginx -T 2>/dev/null | grep -E '^\\s*server .*:800[01] '")
    for name in API_HOSTS:
        address = run_ok(name, "hostname -i").split()[0]
        assert f"server {address}:8000 max_fails" in upstream
        assert f"server {address}:8001 max_fails" in upstream


PKI_CA = "/etc/ssl/stet-pki/ca.crt"


def test_the_load_balancer_reaches_the_instances_over_verified_tls_only():
    site = run_ok("stet-prod-lb", "nginx -T 2>/dev/null")
    assert "proxy_pass https://stet_api;" in site and "proxy_pass http://" not in site
    assert "proxy_ssl_verify on;" in site and "proxy_ssl_name stet-api;" in site
    lb = host("stet-prod-lb")
    for name in API_HOSTS:
        address = run_ok(name, "hostname -i").split()[0]
        for port in (8000, 8001):
            # Plain HTTP gets no answer: the port speaks TLS only.
            plain = lb.run(
                f"curl -s --max-time 5 -o /dev/null -w '%{{http_code}}' http://{address}:{port}/ready"
            )
            assert plain.rc != 0 and plain.stdout in ("", "000"), (name, port, plain.rc, plain.stdout)
            verified = f"curl -s --max-time 5 --cacert {PKI_CA} -o /dev/null -w '%{{http_code}}'"
            # The name nginx verifies, at the instance's address: served and trusted.
            ok = lb.run(f"{verified} --resolve stet-api:{port}:{address} https://stet-api:{port}/ready")
            assert (ok.rc, ok.stdout) == (0, "200"), (name, port, ok.stderr)
            # Any other name fails verification (curl 60: the certificate does not match it).
            wrong = lb.run(f"{verified} --resolve stet-web:{port}:{address} https://stet-web:{port}/ready")
            assert wrong.rc == 60, (name, port, wrong.rc, wrong.stderr)


def test_prometheus_scrapes_every_instance_over_https():
    MONITOR.settle({'count by (host) (up{job="stet_api"} == 1)': dict.fromkeys(API_HOSTS, "2")})
    answer = json.loads(MONITOR.run(f"curl -sf --max-time 10 {MONITOR.url(9090)}/api/v1/targets"))
    urls = [t["scrapeUrl"] for t in answer["data"]["activeTargets"] if t["labels"]["job"] == "stet_api"]
    assert len(urls) == 4 and all(url.startswith("https://") for url in urls), urls


def test_correction_is_a_fact_for_an_allowed_reader_and_hidden_from_a_denied_one(client):
    status, created = api(
        "POST",
        "/v1/corrections",
        {
            "subject": SUBJECT,
            "field_key": "allergies",
            "value": ["peanuts"],
            "class": "FACT",
            "permissions": {"readers": ["assistant", "billing-bot"], "deny_list": ["billing-bot"]},
            "actor": {"type": "user", "id": SUBJECT["id"]},
            "idempotency_key": f"e2e-{SUBJECT['id']}",
        },
    )
    assert status == 201, created
    allowed = facts_for("assistant")
    assert [(f["field_key"], f["value"], f["correction_id"]) for f in allowed] == [
        ("allergies", ["peanuts"], created["correction_id"])
    ]
    # In readers but also in deny_list, and not a reader at all: both see nothing.
    assert facts_for("billing-bot") == []
    assert facts_for("stranger") == []

    # Streaming replication brings the row to the replica within seconds.
    correction_id = uuid.UUID(created["correction_id"])  # a UUID: safe to put in the query
    query = f"SELECT count(*) FROM corrections WHERE correction_id = '{correction_id}'"  # noqa: S608
    replica = host("stet-prod-db2")
    for _ in range(30):
        if replica.run(f'runuser -u postgres -- psql -d stet -tAc "{query}"').stdout.strip() == "1":
            break
        time.sleep(1)
    else:
        raise AssertionError("the correction did not reach the replica within 30 s")
    assert (
        replica.run('runuser -u postgres -- psql -d stet -tAc "SELECT pg_is_in_recovery()"').stdout.strip()
        == "t"
    )


def escalation() -> dict:
    status, body = api("GET", "/v1/enforcement/escalation")
    assert status == 200, body
    return body


def heartbeat(system_id: str) -> None:
    status, body = api(
        "POST",
        "/v1/enforcement/heartbeat",
        {"system_id": system_id, "enforced_correction_version": "2026-11-25T00:00:00Z"},
    )
    assert status == 201, body


def test_escalation_goes_none_warn_critical_as_heartbeats_age_and_systems_go_missing(client):
    # The API hosts run with a 2 s heartbeat interval and a grace multiplier of 2.
    systems = [f"enforcer-{n}-{uuid.uuid4().hex[:6]}" for n in range(3)]
    try:
        for system_id in systems[:2]:
            assert api("PUT", f"/v1/enforcement/systems/{system_id}")[0] == 201
            heartbeat(system_id)
        assert escalation()["escalation"] == "NONE"

        time.sleep(5)  # past 2 s x 2: the first system ages, the second reports again
        heartbeat(systems[1])
        warn = escalation()
        assert warn["escalation"] == "WARN", warn
        assert warn["summary"]["stale"] >= 1

        assert api("PUT", f"/v1/enforcement/systems/{systems[2]}")[0] == 201
        critical = escalation()
        assert critical["escalation"] == "CRITICAL", critical
        assert critical["summary"]["missing"] == 1
    finally:
        # The deploy gate watches this tenant at CRITICAL: no system is left missing.
        for system_id in systems:
            api("DELETE", f"/v1/enforcement/systems/{system_id}")
    assert escalation()["escalation"] != "CRITICAL"
