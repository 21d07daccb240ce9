"""The API host as the stet_api role deploys it: instances, sandbox, secrets, the role's
keys, the release layout, and a rolling restart that loses no request."""

from __future__ import annotations

import json
import uuid

from conftest import (
    API_HOST,
    MONITORING_TENANT,
    PORTS,
    RELEASE,
    REPO,
    SCENARIO,
    SECRETS,
    host,
    local_request,
    main_pid,
    playbook,
    run_ok,
)


def test_both_instances_are_active_healthy_and_ready():
    for port in PORTS:
        assert run_ok(API_HOST, f"systemctl is-active stet-api@{port}").strip() == "active"
        assert local_request("GET", f"http://127.0.0.1:{port}/health")[0] == 200
        status, body = local_request("GET", f"http://127.0.0.1:{port}/ready")
        assert status == 200, body


def test_instances_run_as_stet_inside_the_sandbox():
    shown = run_ok(
        API_HOST,
        "systemctl show -p User,NoNewPrivileges,ProtectSystem,ProtectHome,PrivateTmp,PrivateDevices,"
        "RestrictAddressFamilies,MemoryMax stet-api@8000",
    )
    settings = dict(line.split("=", 1) for line in shown.splitlines())
    assert settings["User"] == "stet"
    assert settings["NoNewPrivileges"] == "yes"
    assert settings["ProtectSystem"] == "strict"
    assert settings["ProtectHome"] == "yes"
    assert settings["PrivateTmp"] == "yes"
    assert settings["PrivateDevices"] == "yes"
    assert settings["RestrictAddressFamilies"] == "AF_INET AF_INET6 AF_UNIX"
    assert settings["MemoryMax"] == str(2 * 1024**3)
    for port in PORTS:
        pid = main_pid(port)
        users = run_ok(API_HOST, f"ps -o user= -p {pid} --ppid {pid}").split()
        assert len(users) == 3 and set(users) == {"stet"}, users  # master + 2 workers
        # What the kernel enforces on the process, not what the unit file says.
        status = run_ok(API_HOST, f"cat /proc/{pid}/status")
        assert "NoNewPrivs:\t1" in status
        assert "Seccomp:\t2" in status
        assert "CapEff:\t0000000000000000" in status
        # ProtectSystem=strict: the release is read-only even for a process that may write it.
        mounts = run_ok(API_HOST, f"cat /proc/{pid}/mountinfo")
        assert any(f.split()[4] == "/" and " ro" in f" {f.split()[5]}" for f in mounts.splitlines())


def test_database_url_is_a_credential_not_an_environment_value():
    url = host(API_HOST).file(f"{SECRETS}/database_url")
    assert (url.user, url.group, url.mode) == ("root", "root", 0o600)
    password = run_ok(API_HOST, f"sed -E 's|^[^:]+://[^:]+:([^@]+)@.*|\\1|' {SECRETS}/database_url").strip()
    assert len(password) >= 16
    for port in PORTS:
        assert run_ok(API_HOST, f"stat -c '%a %U' /run/stet-api-{port}/database_url").strip() == "400 stet"
        pid = main_pid(port)
        for process in [pid, *run_ok(API_HOST, f"pgrep -P {pid}").split()]:
            environment = run_ok(API_HOST, f"tr '\\0' '\\n' < /proc/{process}/environ").splitlines()
            # LoadCredential= on a real host; the test hosts' switch copies it to the
            # instance's runtime directory (tmpfs) instead.
            assert f"DATABASE_URL_FILE=/run/stet-api-{port}/database_url" in environment
            assert not any(line.startswith("DATABASE_URL=") for line in environment)
            assert not any(password in line for line in environment)


def test_the_health_check_key_reads_its_tenant_and_can_change_nothing():
    token_file = f"{SECRETS}/health-check.token"
    token = host(API_HOST).file(token_file)
    assert (token.user, token.mode) == ("root", 0o600)
    subject = f"u-{uuid.uuid4().hex[:8]}"
    query = f"subject_type=user&subject_id={subject}&requester_id=assistant"
    for port in PORTS:
        status, body = local_request(
            "GET", f"http://127.0.0.1:{port}/v1/facts?{query}", token_file, MONITORING_TENANT
        )
        assert status == 200, body
    other_tenant = str(uuid.uuid4())
    assert local_request("GET", f"http://127.0.0.1:8000/v1/facts?{query}", token_file, other_tenant)[0] == 403
    correction = {
        "subject": {"type": "user", "id": subject},
        "field_key": "allergy",
        "value": "peanuts",
        "class": "FACT",
        "permissions": {"readers": ["assistant"]},
        "actor": {"type": "user", "id": subject},
        "idempotency_key": uuid.uuid4().hex,
    }
    heartbeat = {
        "system_id": "health-check-probe",
        "enforced_correction_version": "2026-01-01T00:00:00+00:00",
    }
    refused = [
        ("POST", "/v1/corrections", correction, "write"),
        ("POST", "/v1/enforcement/heartbeat", heartbeat, "enforce"),
        ("PUT", "/v1/enforcement/systems/health-check-probe", None, "admin"),
    ]
    for method, path, body, scope in refused:
        url = f"http://127.0.0.1:8000{path}"
        assert local_request(method, url, None, MONITORING_TENANT, body)[0] == 401
        status, answer = local_request(method, url, token_file, MONITORING_TENANT, body)
        assert status == 403, (method, path, answer)
        assert json.loads(answer)["error"]["details"]["required_scope"] == scope
    status, body = local_request(
        "GET", f"http://127.0.0.1:8001/v1/facts?{query}", token_file, MONITORING_TENANT
    )
    assert status == 200 and "peanuts" not in body, body


def test_release_layout_allows_a_symlink_rollback():
    assert run_ok(API_HOST, "readlink /opt/stet/current").strip() == f"/opt/stet/releases/{RELEASE}"
    migrations = run_ok(API_HOST, "ls /opt/stet/current/migrations/").split()
    expected = sorted(p.name for p in (REPO / "api" / "migrations").glob("*.sql"))
    assert sorted(migrations) == expected


def test_rolling_restart_loses_no_request():
    before = {port: main_pid(port) for port in PORTS}
    # A client that, like nginx's proxy_next_upstream, tries the other instance when one
    # refuses: a request is lost only if both instances fail at the same moment. (Through
    # nginx itself the same restart costs requests: max_fails marks both instances down
    # for fail_timeout; that belongs to the serving path's own issue.)
    loop = (
        "ok=0; lost=0; end=$((SECONDS + 90)); "
        "while [ ! -e /tmp/stop-load ] && [ $SECONDS -lt $end ]; do "
        "if curl -sf --max-time 5 http://127.0.0.1:8000/ready >/dev/null "
        "|| curl -sf --max-time 5 http://127.0.0.1:8001/ready >/dev/null; "
        "then ok=$((ok + 1)); else lost=$((lost + 1)); fi; sleep 0.05; done; "
        "echo $ok $lost > /tmp/load-result"
    )
    run_ok(API_HOST, "rm -f /tmp/stop-load /tmp/load-result")
    run_ok(API_HOST, f"nohup bash -c '{loop}' >/dev/null 2>&1 &")
    try:
        result = playbook(SCENARIO / "restart.yml")
    finally:
        run_ok(API_HOST, "touch /tmp/stop-load")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    ok, lost = map(
        int,
        run_ok(
            API_HOST,
            "for i in $(seq 30); do [ -s /tmp/load-result ] && break; sleep 1; done; cat /tmp/load-result",
        ).split(),
    )
    after = {port: main_pid(port) for port in PORTS}
    assert all(after[port] != before[port] for port in PORTS), (before, after)
    assert ok > 20
    assert lost == 0, f"{lost} of {ok + lost} requests lost"
