"""The API as the stet_api role deploys it: instances, sandbox, secrets, keys, restarts."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from conftest import API, CLIENT_TENANT, PORTS, SECRETS, http, run_ok

testinfra_hosts = [API]

SCENARIO = Path(__file__).resolve().parent.parent


def main_pid(host, port: int) -> int:
    return int(run_ok(host, f"systemctl show -p MainPID --value stet-api@{port}"))


def test_both_instances_are_active_healthy_and_ready(host):
    for port in PORTS:
        assert run_ok(host, f"systemctl is-active stet-api@{port}") == "active"
        assert http(host, "GET", f"http://127.0.0.1:{port}/health")[0] == 200
        status, body = http(host, "GET", f"http://127.0.0.1:{port}/ready")
        assert status == 200, body


def test_instances_run_as_stet_inside_the_sandbox(host):
    shown = run_ok(
        host,
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
        pid = main_pid(host, port)
        users = run_ok(host, f"ps -o user= -p {pid} --ppid {pid}").split()
        assert len(users) == 3 and set(users) == {"stet"}, users  # master + 2 workers
        # What the kernel enforces on the process, not what the unit file says.
        status = run_ok(host, f"cat /proc/{pid}/status")
        assert "NoNewPrivs:\t1" in status
        assert "Seccomp:\t2" in status
        assert "CapEff:\t0000000000000000" in status
        # ProtectSystem=strict: the release is read-only even for a process that may write it.
        mounts = run_ok(host, f"cat /proc/{pid}/mountinfo")
        assert any(f.split()[4] == "/" and " ro" in f" {f.split()[5]}" for f in mounts.splitlines())


def test_database_url_is_a_credential_not_an_environment_value(host):
    url = host.file(f"{SECRETS}/database_url")
    assert (url.user, url.group, url.mode) == ("root", "root", 0o600)
    password = run_ok(host, f"sed -E 's|^[^:]+://[^:]+:([^@]+)@.*|\\1|' {SECRETS}/database_url")
    assert len(password) >= 16
    for port in PORTS:
        assert run_ok(host, f"stat -c '%a %U' /run/stet-api-{port}/database_url") == "400 stet"
        pid = main_pid(host, port)
        for process in [pid, *run_ok(host, f"pgrep -P {pid}").split()]:
            environment = run_ok(host, f"tr '\\0' '\\n' < /proc/{process}/environ").splitlines()
            # LoadCredential= on a real host; the scenario's container switch copies it to the
            # instance's runtime directory (tmpfs) instead.
            assert f"DATABASE_URL_FILE=/run/stet-api-{port}/database_url" in environment
            assert not any(line.startswith("DATABASE_URL=") for line in environment)
            assert not any(password in line for line in environment)


def test_a_correction_round_trip_works_with_a_key_made_by_the_role(host):
    token_file = f"{SECRETS}/client.token"
    token = host.file(token_file)
    assert (token.user, token.mode) == ("root", 0o600)
    subject = f"u-{uuid.uuid4().hex[:8]}"
    correction = {
        "subject": {"type": "user", "id": subject},
        "field_key": "allergy",
        "value": "peanuts",
        "class": "FACT",
        "permissions": {"readers": ["assistant"]},
        "actor": {"type": "user", "id": subject},
        "idempotency_key": uuid.uuid4().hex,
    }
    base = "http://127.0.0.1:8000"
    assert http(host, "POST", f"{base}/v1/corrections", None, CLIENT_TENANT, correction)[0] == 401
    status, body = http(host, "POST", f"{base}/v1/corrections", token_file, CLIENT_TENANT, correction)
    assert status == 201, body
    query = f"subject_type=user&subject_id={subject}&requester_id=assistant"
    status, body = http(host, "GET", f"http://127.0.0.1:8001/v1/facts?{query}", token_file, CLIENT_TENANT)
    assert status == 200, body
    assert '"value":"peanuts"' in body.replace(" ", "")


def test_release_layout_allows_a_symlink_rollback(host):
    assert run_ok(host, "readlink /opt/stet/current") == "/opt/stet/releases/v1.2.1-test"
    migrations = run_ok(host, "ls /opt/stet/current/migrations/").split()
    expected = sorted(p.name for p in (SCENARIO.parent.parent / "api" / "migrations").glob("*.sql"))
    assert sorted(migrations) == expected


def test_rolling_restart_loses_no_request(host):
    before = {port: main_pid(host, port) for port in PORTS}
    # A client that, like nginx's proxy_next_upstream, tries the other instance when one
    # refuses: a request is lost only if both instances fail at the same moment.
    loop = (
        "ok=0; lost=0; end=$((SECONDS + 90)); "
        "while [ ! -e /tmp/stop-load ] && [ $SECONDS -lt $end ]; do "
        "if curl -sf --max-time 5 http://127.0.0.1:8000/ready >/dev/null "
        "|| curl -sf --max-time 5 http://127.0.0.1:8001/ready >/dev/null; "
        "then ok=$((ok + 1)); else lost=$((lost + 1)); fi; sleep 0.05; done; "
        "echo $ok $lost > /tmp/load-result"
    )
    run_ok(host, "rm -f /tmp/stop-load /tmp/load-result")
    run_ok(host, f"nohup bash -c '{loop}' >/dev/null 2>&1 &")
    env = {
        **os.environ,
        "ANSIBLE_ROLES_PATH": str(SCENARIO.parent.parent / "roles"),
        "ANSIBLE_COLLECTIONS_PATH": str(SCENARIO.parent.parent / "collections"),
    }
    playbook = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            os.environ["MOLECULE_INVENTORY_FILE"],
            str(SCENARIO / "restart.yml"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    run_ok(host, "touch /tmp/stop-load")
    assert playbook.returncode == 0, playbook.stdout[-3000:]
    ok, lost = map(
        int,
        run_ok(
            host,
            "for i in $(seq 30); do [ -s /tmp/load-result ] && break; sleep 1; done; cat /tmp/load-result",
        ).split(),
    )
    after = {port: main_pid(host, port) for port in PORTS}
    assert all(after[port] != before[port] for port in PORTS), (before, after)
    assert ok > 20
    assert lost == 0, f"{lost} of {ok + lost} requests lost"
