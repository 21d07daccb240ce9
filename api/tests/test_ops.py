"""Operations endpoints, configuration, error bodies and the access log."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from conftest import make_app
from helpers import correction, create_database, drop_database, read_query, write_ledger
from stet_api import create_app
from stet_api.app import ACCESS_LOGGER
from stet_api.config import ConfigError, Settings

UNREACHABLE_DB = "postgresql://nobody:nothing@127.0.0.1:1/none"


@contextlib.contextmanager
def access_log() -> Iterator[list[dict]]:
    """The access log's entries, parsed, of the requests made inside the block."""
    entries: list[dict] = []
    handler = logging.Handler()
    handler.emit = lambda record: entries.append(json.loads(record.getMessage()))
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.addHandler(handler)
    try:
        yield entries
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def dead_db_client():
    app = create_app(
        {
            "DATABASE_URL": UNREACHABLE_DB,
            "STET_AUTH_REQUIRED": "false",
            "STET_UNAUTHENTICATED_NETWORKS": "127.0.0.0/8",
        }
    )
    yield app.test_client()
    app.extensions["stet_pool"].close()


def test_health_answers_without_a_database(dead_db_client):
    response = dead_db_client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_database_down_is_503_database_unavailable(dead_db_client, headers):
    response = dead_db_client.get(f"/v1/facts?{read_query()}", headers=headers)
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "DATABASE_UNAVAILABLE"
    ready = dead_db_client.get("/ready")
    assert ready.status_code == 503
    assert ready.get_json()["database"] == "unreachable"


def test_a_503_names_its_cause_in_the_access_log_and_not_to_the_client(dead_db_client, headers):
    with access_log() as entries:
        response = dead_db_client.get(f"/v1/facts?{read_query()}", headers=headers)
        dead_db_client.get("/health")
    failed, ok = entries
    assert failed["status"] == 503
    assert failed["error"].startswith('OperationalError: connection to server at "127.0.0.1", port 1 failed')
    assert "nothing" not in failed["error"]  # the URL's password
    assert "OperationalError" not in response.get_data(as_text=True)
    assert (ok["status"], "error" in ok) == (200, False)


def test_ready_when_ledger_is_current(client):
    response = client.get("/ready")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ready"
    assert body["migrations"]["applied"] == body["migrations"]["expected"] >= 9


def test_not_ready_when_ledger_is_missing_or_behind(server_url, db_url):
    url = create_database(server_url, "stet_api_ledger")
    app = make_app(url)
    try:
        missing = app.test_client().get("/ready")
        assert missing.status_code == 503
        assert missing.get_json()["error"]["code"] == "MIGRATIONS_NOT_CURRENT"
        assert missing.get_json()["migrations"]["applied"] is None
        write_ledger(url, up_to_version=3)
        behind = app.test_client().get("/ready").get_json()
        assert behind["migrations"] == {"applied": 3, "expected": behind["migrations"]["expected"]}
    finally:
        app.extensions["stet_pool"].close()
        drop_database(server_url, url)


def test_metrics_count_requests_and_escalations(client, headers):
    client.post("/v1/corrections", json=correction(), headers=headers)
    client.get(f"/v1/facts?{read_query()}", headers=headers)
    client.get("/v1/enforcement/escalation", headers=headers)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    text = response.get_data(as_text=True)
    assert 'stet_correction_requests_total{status="201"}' in text
    assert 'stet_fact_requests_total{status="200"}' in text
    assert 'stet_request_duration_seconds_bucket{endpoint="/v1/facts",le="0.05",method="GET"}' in text
    assert 'stet_escalation_evaluations_total{level="NONE"}' in text


def test_openapi_document_lists_every_route(client, legacy_app):
    document = client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, ops in document["paths"].items() for method in ops}
    routed = {
        (rule.rule.replace("<", "{").replace(">", "}"), method)
        for rule in legacy_app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
        if rule.endpoint != "static" and rule.rule != "/openapi.json"
    }
    assert routed == documented


def test_request_id_is_echoed_or_generated(client):
    assert client.get("/health", headers={"X-Request-Id": "abc-123"}).headers["X-Request-Id"] == "abc-123"
    generated = client.get("/health", headers={"X-Request-Id": "bad id with spaces"}).headers["X-Request-Id"]
    assert len(generated) == 32


def test_unknown_route_and_wrong_method_are_json_errors(client):
    assert client.get("/v2/nothing").get_json()["error"]["code"] == "NOT_FOUND"
    wrong = client.delete("/v1/facts")
    assert wrong.status_code == 405
    assert wrong.get_json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_access_log_is_one_json_line_with_the_request_id(client, headers):
    with access_log() as entries:
        client.get(
            f"/v1/facts?{read_query()}",
            # A client inside the network this app takes without a key (127.0.0.0/8).
            headers={**headers, "X-Request-Id": "trace-1", "X-Forwarded-For": "127.0.0.2"},
        )
    entry = entries[-1]
    assert entry["request_id"] == "trace-1"
    # The test client's peer is a trusted proxy (loopback, the default): the forwarded client.
    assert (entry["remote_addr"], entry["client"]) == ("127.0.0.1", "127.0.0.2")
    assert entry["path"] == "/v1/facts"
    assert entry["status"] == 200
    assert entry["duration_ms"] >= 0


def test_access_log_can_be_switched_off(db_url, headers):
    app = make_app(
        db_url,
        STET_AUTH_REQUIRED="false",
        STET_UNAUTHENTICATED_NETWORKS="127.0.0.0/8",
        STET_ACCESS_LOG="false",
    )
    try:
        with access_log() as entries:
            assert app.test_client().get(f"/v1/facts?{read_query()}", headers=headers).status_code == 200
    finally:
        app.extensions["stet_pool"].close()
    assert entries == []


def test_database_url_file_is_read_and_env_value_not_needed(tmp_path):
    secret = tmp_path / "database_url"
    secret.write_text("postgresql://stet:s3cret@db/stet\n")
    os.chmod(secret, 0o600)
    settings = Settings.from_env(
        {
            "DATABASE_URL_FILE": str(secret),
            "STET_AUTH_REQUIRED": "false",
            "STET_UNAUTHENTICATED_NETWORKS": "127.0.0.0/8",
        }
    )
    assert settings.database_url == "postgresql://stet:s3cret@db/stet"
    assert settings.auth_required is False
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "DATABASE_URL"),
        ({"DATABASE_URL_FILE": "/nonexistent/url"}, "cannot be read"),
        ({"DATABASE_URL": "postgresql://x", "STET_HEARTBEAT_INTERVAL_SECONDS": "soon"}, "integer"),
        ({"DATABASE_URL": "postgresql://x", "STET_AUTH_REQUIRED": "perhaps"}, "true or false"),
        ({"DATABASE_URL": "postgresql://x", "STET_DB_POOL_MIN": "9", "STET_DB_POOL_MAX": "2"}, "POOL_MIN"),
        ({"DATABASE_URL": "postgresql://x", "STET_AUTH_REQUIRED": "false"}, "STET_UNAUTHENTICATED_NETWORKS"),
        (
            {
                "DATABASE_URL": "postgresql://x",
                "STET_AUTH_REQUIRED": "false",
                "STET_UNAUTHENTICATED_NETWORKS": "10.0.0.0/33",
            },
            "STET_UNAUTHENTICATED_NETWORKS: .*10.0.0.0/33",
        ),
    ],
)
def test_bad_configuration_fails_with_a_clear_message(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def preflight(**env: str) -> subprocess.CompletedProcess:
    """`python -m stet_api.preflight` as a deploy runs it: a process of its own, configured
    by its environment only."""
    return subprocess.run(
        [sys.executable, "-m", "stet_api.preflight"],
        env={"PATH": os.environ["PATH"], "STET_ENV": "test", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_preflight_passes_when_the_release_would_serve(db_url, tmp_path):
    secret = tmp_path / "database_url"
    secret.write_text(db_url + "\n")
    result = preflight(DATABASE_URL_FILE=str(secret))
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["status"] == "ready"


@pytest.mark.parametrize(
    ("env", "code"),
    [
        ({"STET_DB_POOL_MIN": "9", "STET_DB_POOL_MAX": "2"}, "CONFIGURATION"),
        ({"DATABASE_URL": UNREACHABLE_DB}, "DATABASE_UNAVAILABLE"),
    ],
)
def test_preflight_fails_and_says_why_when_the_release_would_not_serve(db_url, env, code):
    result = preflight(**{"DATABASE_URL": db_url, **env})
    assert result.returncode == 1, result.stdout + result.stderr
    assert json.loads(result.stdout)["error"]["code"] == code


def test_preflight_fails_on_a_schema_this_code_does_not_run_on(server_url):
    url = create_database(server_url, "stet_api_preflight")
    try:
        write_ledger(url, up_to_version=3)
        result = preflight(DATABASE_URL=url)
    finally:
        drop_database(server_url, url)
    assert result.returncode == 1, result.stdout + result.stderr
    assert json.loads(result.stdout)["error"]["code"] == "MIGRATIONS_NOT_CURRENT"
