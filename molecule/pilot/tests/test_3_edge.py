"""The edge on the pilot's API host: nginx in front of the two real API instances, TLS with
the certificate pebble issued, limits, logs, renewal and the expiry check, and what nginx
does with a broken configuration or a stopped instance."""

from __future__ import annotations

import collections
import json
import re
import time
import uuid

import pytest
from conftest import API_HOST, DB_HOST, ROOT_CA, SCENARIO, SITE, api, host, load, playbook, run_ok
from e2e import is_failure

DOMAIN = API_HOST
WEBROOT = "/var/www/letsencrypt"
ACCESS_LOG = "/var/log/nginx/stet_access.log"
STABLE_CERTIFICATE = f"/etc/ssl/stet/{DOMAIN}/fullchain.pem"
# What the API answers a POST with neither body nor key: proof the request reached it.
API_REFUSALS = {"400", "401"}
# nginx's write limit (roles/nginx defaults: burst 20 at 10r/s) is whole again after 2 s
# without writes; later tests write from the same address.
WRITE_BURST_REFILL_SECONDS = 3


def curl(args: str) -> str:
    """curl on the web host itself, trusting pebble's root."""
    return run_ok(API_HOST, f"curl -sS --max-time 10 --cacert {ROOT_CA} {args}")


def codes(url: str, count: int, method: str = "GET", last_body: str = "/dev/null") -> list[str]:
    """HTTP status of `count` requests made by one curl process (one keep-alive connection)."""
    targets = " ".join([f"-o /dev/null {url}"] * (count - 1) + [f"-o {last_body} {url}"])
    return curl(f"-X {method} -w '%{{http_code}}\\n' {targets}").split()


def handshake(extra: str = ""):
    return host(API_HOST).run(
        f"openssl s_client -connect {DOMAIN}:443 -servername {DOMAIN} {extra} </dev/null"
    )


def served_serial() -> str:
    return run_ok(
        API_HOST,
        f"openssl s_client -connect {DOMAIN}:443 -servername {DOMAIN} </dev/null 2>/dev/null"
        " | openssl x509 -noout -serial",
    ).strip()


def upstreams() -> set[str]:
    """The API instances nginx proxies to, as its configuration names them."""
    tree = run_ok(API_HOST, "nginx -T 2>/dev/null")
    return set(re.findall(r"^\s*server (\S+:800[01]) ", tree, re.MULTILINE))


def access_log_entries(marker: str) -> list[dict]:
    text = host(API_HOST).file(ACCESS_LOG).content_string
    return [json.loads(line) for line in text.splitlines() if marker in line]


def nginx_master_pid() -> str:
    return run_ok(API_HOST, "systemctl show -p MainPID --value nginx").strip()


@pytest.fixture(scope="module", autouse=True)
def pebble_root(client):
    """The `client` fixture puts pebble's root on the web host too."""
    assert host(API_HOST).file(ROOT_CA).exists


def test_whole_configuration_tests_good():
    run_ok(API_HOST, "nginx -t")


def test_a_configuration_nginx_refuses_is_never_installed_and_the_old_one_keeps_serving():
    before = run_ok(API_HOST, "sha256sum /etc/nginx/nginx.conf").split()[0]
    pid = nginx_master_pid()
    # An int that argument_specs accepts and `nginx -t` refuses ("invalid number").
    result = playbook(SCENARIO / "nginx.yml", "-e", "nginx_worker_connections=-1")
    assert result.returncode != 0
    assert "Write nginx.conf" in result.stdout
    assert "invalid number" in result.stdout + result.stderr
    assert run_ok(API_HOST, "sha256sum /etc/nginx/nginx.conf").split()[0] == before
    assert nginx_master_pid() == pid
    assert codes(f"{SITE}/health", 3) == ["200"] * 3


def test_a_site_nginx_refuses_is_never_written_and_the_old_one_keeps_serving():
    site = "/etc/nginx/sites-available/stet"
    before = run_ok(API_HOST, f"sha256sum {site}").split()[0]
    pid = nginx_master_pid()
    # A string that argument_specs accepts and `nginx -t` refuses.
    result = playbook(SCENARIO / "nginx.yml", "-e", "nginx_proxy_read_timeout=sixty")
    assert result.returncode != 0
    assert "Write the site" in result.stdout
    output = result.stdout + result.stderr
    assert "proxy_read_timeout" in output and "directive invalid value" in output, output[-3000:]
    # Left on disk as it was: a later start or reload of nginx finds a good tree.
    assert run_ok(API_HOST, f"sha256sum {site}").split()[0] == before
    run_ok(API_HOST, "nginx -t")
    assert nginx_master_pid() == pid
    assert codes(f"{SITE}/health", 3) == ["200"] * 3


def test_a_dry_run_shows_the_change_and_changes_nothing():
    """What an operator previews with --check --diff before a change: the role's check mode."""
    before = run_ok(API_HOST, "sha256sum /etc/nginx/nginx.conf")
    processes = run_ok(API_HOST, "pgrep -d, nginx")
    result = playbook(SCENARIO / "nginx.yml", "--check", "--diff", "-e", "nginx_worker_connections=2048")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert re.search(r"^-\s*worker_connections 1024;$", result.stdout, re.MULTILINE), result.stdout[-3000:]
    assert re.search(r"^\+\s*worker_connections 2048;$", result.stdout, re.MULTILINE), result.stdout[-3000:]
    assert re.search(rf"{API_HOST}\s*: ok=\d+\s+changed=[1-9]", result.stdout), result.stdout[-2000:]
    # Nothing written, and no reload: a reload would replace the worker processes.
    assert run_ok(API_HOST, "sha256sum /etc/nginx/nginx.conf") == before
    assert run_ok(API_HOST, "pgrep -d, nginx") == processes


def test_the_api_sees_the_client_behind_nginx(client):
    """Rate limits, the networks allowed without a key and the API's access log name the
    client, not nginx: nginx (a stet_web host) is a trusted proxy by default."""
    marker = uuid.uuid4().hex
    api("GET", f"/v1/client-probe-{marker}")
    (entry,) = access_log_entries(marker)
    port = entry["upstream_addr"].rsplit(":", 1)[1]
    journal = run_ok(API_HOST, f"journalctl -u stet-api@{port} -o cat --since -5min")
    (logged,) = [json.loads(line) for line in journal.splitlines() if line.startswith("{") and marker in line]
    # nginx reaches the instance from its own address, on behalf of the client host.
    assert logged["remote_addr"] != entry["remote_addr"]
    assert logged["client"] == entry["remote_addr"]


def test_only_the_stet_site_is_served():
    tree = run_ok(API_HOST, "nginx -T 2>/dev/null")
    files = re.findall(r"^# configuration file (\S+):", tree, re.MULTILINE)
    assert [f for f in files if "sites-enabled" in f] == ["/etc/nginx/sites-enabled/stet"]


def test_https_reaches_an_api_instance_with_the_request_id_and_pebbles_certificate():
    marker = uuid.uuid4().hex
    curl(f"-o /dev/null {SITE}/v1/edge-probe-{marker}")
    (entry,) = access_log_entries(marker)
    assert entry["upstream_addr"] in upstreams()
    port = entry["upstream_addr"].rsplit(":", 1)[1]
    # The instance nginx chose logged the same request under nginx's request id.
    journal = run_ok(API_HOST, f"journalctl -u stet-api@{port} -o cat --since -5min")
    assert any(
        f"/v1/edge-probe-{marker}" in line and entry["request_id"] in line for line in journal.splitlines()
    ), journal[-2000:]
    issuer = run_ok(
        API_HOST,
        f"openssl s_client -connect {DOMAIN}:443 -servername {DOMAIN} </dev/null 2>/dev/null"
        " | openssl x509 -noout -issuer",
    )
    assert "Pebble Intermediate CA" in issuer
    verified = handshake(f"-CAfile {ROOT_CA} -verify_return_error -verify_hostname {DOMAIN}")
    assert verified.rc == 0, verified.stderr
    assert "Verify return code: 0 (ok)" in verified.stdout


def test_both_instances_take_requests():
    marker = uuid.uuid4().hex
    for number in range(12):
        curl(f"-o /dev/null {SITE}/v1/edge-spread-{marker}-{number}")
    served_by = {entry["upstream_addr"] for entry in access_log_entries(marker)}
    assert served_by == upstreams()
    assert {address.rsplit(":", 1)[1] for address in served_by} == {"8000", "8001"}


def test_acme_challenge_is_served_on_port_80():
    token = uuid.uuid4().hex
    path = f"{WEBROOT}/.well-known/acme-challenge/{token}"
    run_ok(API_HOST, f"mkdir -p {WEBROOT}/.well-known/acme-challenge && printf {token} > {path}")
    try:
        answer = run_ok(
            API_HOST, f"curl -sS -w ' %{{http_code}}' http://{DOMAIN}/.well-known/acme-challenge/{token}"
        )
    finally:
        run_ok(API_HOST, f"rm -f {path}")
    assert answer == f"{token} 200"


@pytest.mark.parametrize("version", ["tls1", "tls1_1"])
def test_old_tls_versions_are_refused_by_the_server(version):
    # SECLEVEL=0 lets OpenSSL 3 offer TLS 1.0/1.1 at all: the refusal must come from nginx.
    result = handshake(f"-{version} -cipher DEFAULT@SECLEVEL=0")
    assert result.rc != 0
    assert "no protocols available" not in result.stderr
    assert "alert protocol version" in result.stderr


@pytest.mark.parametrize(("version", "name"), [("tls1_2", "TLSv1.2"), ("tls1_3", "TLSv1.3")])
def test_tls_1_2_and_1_3_are_accepted(version, name):
    result = handshake(f"-{version}")
    assert result.rc == 0, result.stderr
    assert f"New, {name}, Cipher is" in result.stdout


def test_weak_tls_1_2_ciphers_are_refused():
    result = handshake("-tls1_2 -cipher AES128-SHA:DHE-RSA-AES128-SHA")
    assert result.rc != 0
    assert "handshake failure" in result.stderr


def test_tls_session_tickets_are_off():
    result = handshake("-tls1_2")
    assert result.rc == 0, result.stderr
    assert "TLS session ticket lifetime hint" not in result.stdout


def test_hsts_header_and_no_version_disclosure():
    headers = curl(f"--fail -D - -o /dev/null {SITE}/health").lower()
    assert "strict-transport-security: max-age=63072000" in headers
    assert re.search(r"^server: nginx\r?$", headers, re.MULTILINE)
    error_page = run_ok(API_HOST, f"curl -sS http://{DOMAIN}/.well-known/acme-challenge/none")
    assert "nginx" in error_page and "nginx/" not in error_page


def test_api_answers_are_neither_sniffed_nor_cached():
    for path in ("/health", "/v1/facts"):
        headers = curl(f"-D - -o /dev/null {SITE}{path}").lower()
        assert "x-content-type-options: nosniff" in headers, (path, headers)
        assert "cache-control: no-store" in headers, (path, headers)


def test_another_host_name_gets_no_answer_and_no_certificate():
    other = "not-stet.example"
    plain = host(API_HOST).run(f"curl -sS --max-time 10 --resolve {other}:80:127.0.0.1 http://{other}/health")
    # 444: nginx closes the connection without a response (curl: empty reply).
    assert plain.rc == 52, (plain.rc, plain.stdout, plain.stderr)
    tls = host(API_HOST).run(f"openssl s_client -connect 127.0.0.1:443 -servername {other} </dev/null 2>&1")
    assert tls.rc != 0 and "BEGIN CERTIFICATE" not in tls.stdout, tls.stdout
    assert re.search(r"alert unrecognized name|alert number 112", tls.stdout), tls.stdout
    # Our own name is still served on the same addresses.
    assert curl(f"--resolve {DOMAIN}:443:127.0.0.1 -o /dev/null -w '%{{http_code}}' {SITE}/health") == "200"


def test_access_log_is_json_skips_health_and_keeps_no_query_string():
    marker = uuid.uuid4().hex
    subject = f"subject-{uuid.uuid4().hex}"
    curl(f"--fail -o /dev/null {SITE}/health?probe={marker}")
    status = curl(f"-o /dev/null -w '%{{http_code}}' '{SITE}/v1/log-probe-{marker}?subject_id={subject}'")
    (entry,) = access_log_entries(marker)
    assert entry["path"] == f"/v1/log-probe-{marker}"
    assert host(API_HOST).run(f"grep -rlF {subject} /var/log/nginx").stdout == ""
    assert str(entry["status"]) == status
    assert entry["upstream_addr"] in upstreams()
    assert entry["ssl_protocol"] == "TLSv1.3"


def test_writes_are_rate_limited_with_the_api_error_body():
    url = f"{SITE}/v1/corrections"
    last_body = "/tmp/edge-rate-limited.json"
    # No body and no key: the API refuses what nginx lets through (400 or 401, one of them
    # every time); nginx answers the rest 429 with the API's error body.
    posts = codes(url, 60, method="POST", last_body=last_body)
    refused_by_api = posts[0]
    assert refused_by_api in API_REFUSALS, posts
    assert posts.count(refused_by_api) >= 20 and posts[-1] == "429", posts
    assert set(posts) == {refused_by_api, "429"}, posts
    assert json.loads(host(API_HOST).file(last_body).content_string)["error"]["code"] == "RATE_LIMITED"
    # Reads are not limited.
    assert codes(f"{SITE}/health", 60) == ["200"] * 60
    time.sleep(WRITE_BURST_REFILL_SECONDS)


def test_a_body_over_the_apis_limit_is_refused_at_the_edge_with_the_api_error_body():
    url = f"{SITE}/v1/enforcement/heartbeat"
    answer = "/tmp/edge-too-large.json"
    # stet_api_max_body_bytes and nginx_client_max_body_size: 1 MiB.
    for size, refused_by in ((1024 * 1024 - 1024, API_REFUSALS), (1024 * 1024 + 1, {"413"})):
        run_ok(API_HOST, f"head -c {size} /dev/zero | tr '\\0' x > /tmp/edge-body")
        status = curl(f"-X POST --data-binary @/tmp/edge-body -o {answer} -w '%{{http_code}}' {url}")
        assert status in refused_by, (size, status)
    assert json.loads(host(API_HOST).file(answer).content_string)["error"]["code"] == "PAYLOAD_TOO_LARGE"


def test_metrics_only_from_allowed_networks():
    local = curl(f"--resolve {DOMAIN}:443:127.0.0.1 -o /dev/null -w '%{{http_code}}' {SITE}/metrics")
    assert local == "200"
    via_network = curl(f"-o /dev/null -w '%{{http_code}}' {SITE}/metrics")
    assert via_network == "403"


def test_a_stopped_instance_loses_no_request():
    run_ok(API_HOST, "systemctl stop stet-api@8001")
    try:
        marker = uuid.uuid4().hex
        gets = codes(f"{SITE}/health?stopped={marker}", 50) + codes(f"{SITE}/v1/stopped-{marker}", 50)
        # Refused connections are retried on the other instance, POSTs included.
        posts = codes(f"{SITE}/v1/corrections?stopped={marker}", 10, method="POST")
        served_by = {entry["upstream_addr"].rsplit(":", 1)[1] for entry in access_log_entries(marker)}
    finally:
        run_ok(API_HOST, "systemctl start stet-api@8001")
        run_ok(
            API_HOST,
            "for i in $(seq 60); do curl -sf http://127.0.0.1:8001/ready >/dev/null && exit 0; sleep 1; done;"
            " exit 1",
        )
    assert gets[:50] == ["200"] * 50
    assert set(gets[50:]) == {"404"}, gets[50:]
    assert len(set(posts)) == 1 and posts[0] in API_REFUSALS, posts
    # nginx logs each try: the dead instance's refusals and the live one's answers.
    assert "8000" in served_by


def test_a_postgresql_restart_fails_only_the_requests_sent_while_it_is_down(client):
    with load(max_seconds=300, request_log=True) as traffic:
        time.sleep(3)
        down_at = time.time()
        run_ok(DB_HOST, "systemctl restart postgresql@15-main")
        up_at = time.time()
        recovered = traffic.wait_for_service(down_at, timeout=120, steady_seconds=10)
    summary = traffic.stop()
    requests = traffic.requests()
    failed = [r for r in requests if is_failure(r["status"])]
    back_after, _ = traffic.service_back_after(down_at, requests)
    last_failure = max((r["started"] for r in failed), default=down_at)
    writes = traffic.corrections_check(DB_HOST)
    print(
        "postgresql restart:",
        json.dumps(
            {
                "restart_seconds": round(up_at - down_at, 1),
                "sent": summary["sent"],
                "failed": len(failed),
                "failed_by_status": collections.Counter(r["status"] for r in failed),
                "back_after_seconds": back_after,
                "last_failure_after_restart_seconds": round(last_failure - up_at, 1),
            }
        ),
    )
    assert recovered, summary
    # Every failure is the API's own answer while the database was away (503): nginx never
    # ran out of instances (502) and no request hung into a timeout (504, loadgen's timeout).
    assert {r["status"] for r in failed} <= {"503"}, summary
    # And none after PostgreSQL was back, but for PgBouncer's retry of a failed login (1 s).
    assert last_failure - up_at <= 2.0, (last_failure - up_at, summary)
    assert writes["lost"] == [], writes


def test_a_hung_postgresql_gets_quick_503s_and_the_service_resumes_by_itself(client):
    # Every PostgreSQL process stopped (SIGSTOP): connections stay open, nothing answers.
    with load(max_seconds=300, request_log=True) as traffic:
        time.sleep(3)
        frozen_at = time.time()
        run_ok(DB_HOST, "pkill -STOP -x postgres")
        try:
            time.sleep(10)
            health = curl(f"-o /dev/null -w '%{{http_code}} %{{time_total}}' {SITE}/health").split()
        finally:
            run_ok(DB_HOST, "pkill -CONT -x postgres")
        thawed_at = time.time()
        recovered = traffic.wait_for_service(thawed_at, timeout=120, steady_seconds=10)
    summary = traffic.stop()
    during = [r for r in traffic.requests() if frozen_at <= r["started"] <= thawed_at]
    slowest = max(r["finished"] - r["started"] for r in during)
    writes = traffic.corrections_check(DB_HOST)
    print(
        "postgresql hung:",
        json.dumps(
            {
                "frozen_seconds": round(thawed_at - frozen_at, 1),
                "sent_while_frozen": len(during),
                "statuses_while_frozen": collections.Counter(r["status"] for r in during),
                "slowest_answer_seconds": round(slowest, 1),
                "health": health,
            }
        ),
    )
    assert recovered, summary
    # Every request got an answer, the API's 503 at worst, before the client's 10 s timeout:
    # none hung, none was a 502/504 from nginx.
    assert set(summary["failures"]) <= {"503"}, summary
    # /health does not queue behind the database work.
    assert health[0] == "200" and float(health[1]) < 2.0, health
    assert writes["lost"] == [], writes


def test_one_renewal_scheduler():
    timer = host(API_HOST).service("certbot.timer")
    assert timer.is_enabled and timer.is_running
    cron_jobs = run_ok(
        API_HOST, "grep -rl certbot /etc/cron.d /etc/crontab /var/spool/cron 2>/dev/null || true"
    )
    assert cron_jobs.strip() == ""


def test_renewal_through_the_timers_environment_reloads_nginx_under_load(client):
    before = served_serial()
    environment = run_ok(API_HOST, "systemctl show -P Environment certbot.service").strip()
    assert "REQUESTS_CA_BUNDLE=" in environment
    # The deploy hook reloads nginx while reads and writes go through it.
    with load(max_seconds=120) as traffic:
        run_ok(API_HOST, f"env {environment} certbot renew --force-renewal --no-random-sleep-on-renew")
    traffic.assert_nothing_failed_or_lost(DB_HOST, min_reads=20, min_writes=1)
    after = served_serial()
    on_disk = run_ok(
        API_HOST, f"openssl x509 -noout -serial -in /etc/letsencrypt/live/{DOMAIN}/cert.pem"
    ).strip()
    assert after != before
    assert after == on_disk


def test_expiry_check_passes_for_the_served_certificate_and_fails_for_one_about_to_expire():
    assert host(API_HOST).service("certbot-expiry-check.timer").is_running
    command = run_ok(API_HOST, "systemctl show -P ExecStart certbot-expiry-check.service")
    assert f"-checkend {14 * 86400}" in command
    assert STABLE_CERTIFICATE in command
    run_ok(API_HOST, "systemctl start certbot-expiry-check.service")
    # A certificate valid for one more day at the path the check reads (nginx is not
    # reloaded, so it keeps serving the real one); put back whatever was there.
    run_ok(
        API_HOST,
        f"mv {STABLE_CERTIFICATE} {STABLE_CERTIFICATE}.saved && openssl req -x509 -newkey ec"
        " -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /tmp/expiring.key -days 1"
        f" -subj /CN={DOMAIN} -out {STABLE_CERTIFICATE} 2>/dev/null",
    )
    try:
        expiring = host(API_HOST).run("systemctl start certbot-expiry-check.service")
        state = run_ok(API_HOST, "systemctl show -p Result --value certbot-expiry-check.service").strip()
    finally:
        run_ok(API_HOST, f"mv {STABLE_CERTIFICATE}.saved {STABLE_CERTIFICATE}")
    assert expiring.rc != 0
    assert state == "exit-code"
    run_ok(API_HOST, "systemctl start certbot-expiry-check.service")


def test_firewall_allows_http_and_https():
    status = run_ok(API_HOST, "ufw status")
    assert "Status: active" in status
    for port in ("80/tcp", "443/tcp"):
        assert re.search(rf"^{port}\s+ALLOW\s+Anywhere", status, re.MULTILINE), status
