"""stet.ops.api_key, heartbeat and enforcement_check through ansible-playbook against the real API."""

from __future__ import annotations

import os
import shutil
import stat
import time
import uuid
from pathlib import Path

import pytest
from conftest import free_port


@pytest.fixture
def tenant_id():
    return str(uuid.uuid4())


@pytest.fixture
def manage_key(run_playbook, api, tenant_id, tmp_path):
    def manage(
        state=None,
        token_file=tmp_path / "monitor.token",
        tenant=None,
        name="monitor",
        check=False,
        scopes=None,
    ):
        variables = dict(dsn_file=api.database.dsn_file, tenant_id=tenant or tenant_id, key_name=name)
        if state:
            variables["key_state"] = state
        if scopes is not None:
            variables["key_scopes"] = scopes
        if token_file:
            variables["token_file"] = token_file
        hidden = [api.database.password]
        return run_playbook("api_key.yml", variables, check=check, diff=True, secrets_to_hide=hidden)

    return manage


@pytest.fixture
def enforcement(run_playbook, api, tenant_id):
    def check(api_key_file, tenant=None, **options):
        variables = dict(api_url=api.url, tenant_id=tenant or tenant_id, api_key_file=api_key_file, **options)
        return run_playbook("enforcement_check.yml", variables)

    return check


@pytest.fixture
def heartbeat(run_playbook, api, tenant_id):
    def send(api_key_file, system_id, check=False):
        variables = dict(api_url=api.url, tenant_id=tenant_id, api_key_file=api_key_file, system_id=system_id)
        return run_playbook("heartbeat.yml", variables, check=check)

    return send


def active_keys(api, tenant_id):
    return api.database.query(
        "SELECT key_id::text FROM api_keys WHERE tenant_id = %s AND revoked_at IS NULL", (tenant_id,)
    )


def test_api_key_create_unchanged_rotate_revoke(manage_key, enforcement, api, tenant_id, tmp_path):
    token_file = tmp_path / "monitor.token"
    created = manage_key()
    assert created.rc == 0 and created.result["changed"]
    assert "token" not in created.result, "the token must stay in token_file"
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    token = token_file.read_text().strip()
    assert token not in created.output
    assert token.startswith(f"stet_{uuid.UUID(created.result['key_id']).hex}_")
    assert enforcement(token_file).rc == 0, "the new key does not authenticate"

    unchanged = manage_key()
    assert unchanged.rc == 0 and not unchanged.result["changed"]
    assert unchanged.result["key_id"] == created.result["key_id"] and token_file.read_text().strip() == token

    predicted = manage_key("rotated", check=True)
    assert predicted.rc == 0 and predicted.result["changed"]
    assert token_file.read_text().strip() == token
    assert active_keys(api, tenant_id) == [(created.result["key_id"],)]

    old_token_file = tmp_path / "old.token"
    shutil.copy(token_file, old_token_file)
    rotated = manage_key("rotated")
    assert rotated.rc == 0 and rotated.result["changed"]
    assert rotated.result["revoked_key_id"] == created.result["key_id"]
    assert rotated.result["key_id"] != created.result["key_id"]
    assert token_file.read_text().strip() != token
    refused = enforcement(old_token_file)
    assert refused.rc != 0 and refused.result["error_kind"] == "http"
    assert (refused.result["status"], refused.result["error_code"]) == (401, "UNAUTHENTICATED")
    assert enforcement(token_file).rc == 0, "the rotated key does not authenticate"

    shutil.copy(token_file, old_token_file)
    revoked = manage_key("absent")
    assert revoked.rc == 0 and revoked.result["changed"] and revoked.result["key_id"] is None
    assert not token_file.exists() and active_keys(api, tenant_id) == []
    assert enforcement(old_token_file).result.get("error_code") == "UNAUTHENTICATED"
    assert not manage_key("absent").result["changed"]


def stored_scopes(api, tenant_id, name="monitor"):
    return api.database.query(
        "SELECT scopes FROM api_keys WHERE tenant_id = %s AND name = %s AND revoked_at IS NULL",
        (tenant_id, name),
    )


def test_scopes_are_set_idempotently_with_check_mode_and_diff(
    manage_key, enforcement, heartbeat, api, tenant_id
):
    created = manage_key(scopes=["read"])
    assert created.rc == 0 and created.result["changed"] and created.result["scopes"] == ["read"]
    assert stored_scopes(api, tenant_id) == [(["read"],)]
    token_file = created.result["token_file"]
    assert enforcement(token_file).rc == 0, "a read key reads the escalation"
    refused = heartbeat(token_file, "billing")
    assert refused.rc != 0 and (refused.result["status"], refused.result["error_code"]) == (
        403,
        "MISSING_SCOPE",
    )

    again = manage_key(scopes=["read", "read"])
    assert again.rc == 0 and not again.result["changed"] and again.result["scopes"] == ["read"]

    predicted = manage_key(scopes=["enforce"], check=True)
    assert predicted.rc == 0 and predicted.result["changed"] and predicted.result["scopes"] == ["enforce"]
    diff = predicted.result["diff"]
    assert "scopes: read\n" in diff["before"] and "scopes: enforce\n" in diff["after"]
    assert stored_scopes(api, tenant_id) == [(["read"],)], "check mode changed the scopes"

    token = Path(token_file).read_text()
    changed = manage_key(scopes=["enforce"])
    assert changed.rc == 0 and changed.result["changed"]
    assert changed.result["key_id"] == created.result["key_id"] and Path(token_file).read_text() == token
    assert stored_scopes(api, tenant_id) == [(["enforce"],)]
    time.sleep(1.2)  # the API's key cache period in these tests
    assert heartbeat(token_file, "billing").rc == 0
    forbidden = enforcement(token_file)
    assert (forbidden.result["status"], forbidden.result["error_code"]) == (403, "MISSING_SCOPE")
    assert manage_key(scopes=["enforce"]).result["changed"] is False


def test_omitted_scopes_keep_what_the_key_has_and_rotation_inherits_them(manage_key, api, tenant_id):
    manage_key(scopes=["read", "admin"])
    kept = manage_key()
    assert not kept.result["changed"] and kept.result["scopes"] == ["read", "admin"]
    rotated = manage_key("rotated")
    assert rotated.result["changed"] and rotated.result["scopes"] == ["read", "admin"]
    assert stored_scopes(api, tenant_id) == [(["read", "admin"],)]


def test_a_key_made_without_scopes_has_every_scope(manage_key, api, tenant_id):
    created = manage_key()
    assert created.result["scopes"] == ["read", "write", "enforce", "admin"]
    assert stored_scopes(api, tenant_id) == [(["read", "write", "enforce", "admin"],)]


def test_an_unknown_scope_fails_before_anything_changes(manage_key, api, tenant_id):
    failed = manage_key(scopes=["read", "root"])
    assert failed.rc != 0 and "root" in failed.result["msg"]
    assert stored_scopes(api, tenant_id) == []


def test_present_refuses_a_token_file_that_does_not_hold_the_active_key(manage_key, api, tenant_id, tmp_path):
    created = manage_key()
    stranger = tmp_path / "stranger.token"
    stranger.write_text("stet_" + "0" * 32 + "_" + "x" * 43 + "\n")
    refused = manage_key(token_file=stranger)
    assert refused.rc != 0 and "state=rotated" in refused.result["msg"]
    assert stranger.read_text().startswith("stet_000"), "the file must be left as it was"
    assert active_keys(api, tenant_id) == [(created.result["key_id"],)]


def test_returned_token_travels_only_under_no_log(run_playbook, api, enforcement, tenant_id, tmp_path):
    token_copy = tmp_path / "copy.token"
    variables = dict(dsn_file=api.database.dsn_file, tenant_id=tenant_id, key_name="partner")
    variables["token_copy"] = token_copy
    created = run_playbook("api_key_returned.yml", variables)
    assert created.rc == 0
    token = token_copy.read_text()
    assert token.startswith("stet_") and token not in created.output
    assert enforcement(token_copy).rc == 0


def test_a_key_of_another_tenant_is_forbidden(manage_key, enforcement, tmp_path):
    manage_key()
    forbidden = enforcement(tmp_path / "monitor.token", tenant=str(uuid.uuid4()))
    assert forbidden.rc != 0
    assert (forbidden.result["status"], forbidden.result["error_code"]) == (403, "FORBIDDEN")


def test_escalation_thresholds_reached_and_not_reached(manage_key, heartbeat, enforcement, api, tenant_id):
    key = manage_key().result["token_file"]

    dry = heartbeat(key, "billing", check=True)
    assert dry.rc == 0 and dry.result["changed"] and not dry.result["sent"]
    assert enforcement(key, fail_on="WARN").result["systems"] == [], "check mode sent a heartbeat"

    sent = heartbeat(key, "billing")
    assert sent.rc == 0 and sent.result["sent"] and sent.result["status"] == 201
    healthy = enforcement(key, fail_on="WARN")
    assert healthy.rc == 0 and not healthy.result["changed"]
    assert healthy.result["escalation"] == "NONE" and healthy.result["summary"]["ok"] == 1
    assert not healthy.result["threshold_reached"]

    # Ten minutes without a heartbeat, well past interval x grace (60 s x 2).
    api.database.query(
        "UPDATE enforcement_heartbeats SET reported_at = reported_at - interval '10 minutes' "
        "WHERE tenant_id = %s AND system_id = 'billing'",
        (tenant_id,),
    )
    stale_gate = enforcement(key, fail_on="WARN")
    assert stale_gate.rc != 0 and stale_gate.result["error_kind"] == "escalation"
    assert stale_gate.result["escalation"] == "WARN" and "billing (STALE)" in stale_gate.result["msg"]
    below_threshold = enforcement(key, fail_on="CRITICAL")
    assert below_threshold.rc == 0 and below_threshold.result["escalation"] == "WARN"

    with open(key) as token:
        assert api.call("PUT", "/v1/enforcement/systems/crm", tenant_id, token.read().strip()) == 201
    missing = enforcement(key, fail_on="CRITICAL")
    assert missing.rc != 0 and missing.result["escalation"] == "CRITICAL" and "crm" in missing.result["msg"]
    assert missing.result["summary"] == {"total_systems": 2, "ok": 0, "stale": 1, "missing": 1}
    only_billing = enforcement(key, system_id="billing", fail_on="CRITICAL")
    assert only_billing.rc == 0 and only_billing.result["escalation"] == "WARN"
    reported = enforcement(key, fail_on="never")
    assert reported.rc == 0 and reported.result["escalation"] == "CRITICAL"


def test_an_unreachable_api_is_a_network_failure(run_playbook, tenant_id):
    variables = dict(api_url=f"http://127.0.0.1:{free_port()}", tenant_id=tenant_id)
    failed = run_playbook("enforcement_check.yml", variables)
    assert failed.rc != 0 and failed.result["error_kind"] == "network"
    assert "cannot reach" in failed.result["msg"]
