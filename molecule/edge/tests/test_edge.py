"""Effective state of the edge tier: nginx in front of two instances, certificate from pebble."""

import json
import re
import uuid

import pytest

testinfra_hosts = ["stet-edge-web"]

DOMAIN = "stet-edge-web"
LISTENER_CA = "/usr/local/share/stet-test/pebble-listener-ca.pem"
PEBBLE_ROOT = "/tmp/pebble-issuing-root.pem"
WEBROOT = "/var/www/letsencrypt"
ACCESS_LOG = "/var/log/nginx/stet_access.log"
HTTPS = f"https://{DOMAIN}"


def run_ok(host, command):
    result = host.run(command)
    assert result.rc == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def curl(host, args):
    return run_ok(host, f"curl -sS --max-time 10 --cacert {PEBBLE_ROOT} {args}")


def codes(host, url, count, method="GET", last_body="/dev/null"):
    """HTTP status of `count` requests made by one curl process (one keep-alive connection)."""
    targets = " ".join([f"-o /dev/null {url}"] * (count - 1) + [f"-o {last_body} {url}"])
    return curl(host, f"-X {method} -w '%{{http_code}}\\n' {targets}").split()


def served_certificate(host, extra=""):
    return host.run(f"openssl s_client -connect {DOMAIN}:443 -servername {DOMAIN} {extra} </dev/null")


def served_serial(host):
    return run_ok(
        host,
        f"openssl s_client -connect {DOMAIN}:443 -servername {DOMAIN} </dev/null 2>/dev/null"
        " | openssl x509 -noout -serial",
    ).strip()


@pytest.fixture(scope="module", autouse=True)
def pebble_root(host):
    """pebble's issuing root: generated at pebble's start, served by its management API."""
    run_ok(host, f"curl -sSf --cacert {LISTENER_CA} -o {PEBBLE_ROOT} https://stet-edge-acme:15000/roots/0")


def test_whole_configuration_tests_good(host):
    run_ok(host, "nginx -t")


def test_only_the_stet_site_is_served(host):
    tree = run_ok(host, "nginx -T 2>/dev/null")
    files = re.findall(r"^# configuration file (\S+):", tree, re.MULTILINE)
    assert [f for f in files if "sites-enabled" in f] == ["/etc/nginx/sites-enabled/stet"]


def test_https_returns_upstream_answers_with_certificate_from_pebble(host):
    answer = json.loads(curl(host, f"--fail {HTTPS}/v1/corrections/probe"))
    assert answer["port"] in (8000, 8001)
    assert answer["path"] == "/v1/corrections/probe"
    assert answer["forwarded_proto"] == "https"
    issuer = run_ok(
        host,
        f"openssl s_client -connect {DOMAIN}:443 -servername {DOMAIN} </dev/null 2>/dev/null"
        " | openssl x509 -noout -issuer",
    )
    assert "Pebble Intermediate CA" in issuer
    verified = served_certificate(
        host, f"-CAfile {PEBBLE_ROOT} -verify_return_error -verify_hostname {DOMAIN}"
    )
    assert verified.rc == 0, verified.stderr
    assert "Verify return code: 0 (ok)" in verified.stdout


def test_both_instances_take_requests(host):
    ports = {json.loads(curl(host, f"--fail {HTTPS}/v1/who"))["port"] for _ in range(12)}
    assert ports == {8000, 8001}


def test_plain_http_redirects_to_https(host):
    answer = run_ok(
        host, f"curl -sS -o /dev/null -w '%{{http_code}} %{{redirect_url}}' 'http://{DOMAIN}/v1/x?y=1'"
    )
    assert answer == f"301 https://{DOMAIN}/v1/x?y=1"


def test_acme_challenge_is_served_on_port_80(host):
    token = uuid.uuid4().hex
    path = f"{WEBROOT}/.well-known/acme-challenge/{token}"
    run_ok(host, f"mkdir -p {WEBROOT}/.well-known/acme-challenge && printf {token} > {path}")
    try:
        answer = run_ok(
            host, f"curl -sS -w ' %{{http_code}}' http://{DOMAIN}/.well-known/acme-challenge/{token}"
        )
    finally:
        run_ok(host, f"rm -f {path}")
    assert answer == f"{token} 200"


@pytest.mark.parametrize("version", ["tls1", "tls1_1"])
def test_old_tls_versions_are_refused_by_the_server(host, version):
    # SECLEVEL=0 lets OpenSSL 3 offer TLS 1.0/1.1 at all: the refusal must come from nginx.
    result = served_certificate(host, f"-{version} -cipher DEFAULT@SECLEVEL=0")
    assert result.rc != 0
    assert "no protocols available" not in result.stderr
    assert "alert protocol version" in result.stderr


@pytest.mark.parametrize("version,name", [("tls1_2", "TLSv1.2"), ("tls1_3", "TLSv1.3")])
def test_tls_1_2_and_1_3_are_accepted(host, version, name):
    result = served_certificate(host, f"-{version}")
    assert result.rc == 0, result.stderr
    assert f"New, {name}, Cipher is" in result.stdout


def test_weak_tls_1_2_ciphers_are_refused(host):
    result = served_certificate(host, "-tls1_2 -cipher AES128-SHA:DHE-RSA-AES128-SHA")
    assert result.rc != 0
    assert "handshake failure" in result.stderr


def test_tls_session_tickets_are_off(host):
    result = served_certificate(host, "-tls1_2")
    assert result.rc == 0, result.stderr
    assert "TLS session ticket lifetime hint" not in result.stdout


def test_hsts_header_and_no_version_disclosure(host):
    headers = curl(host, f"--fail -D - -o /dev/null {HTTPS}/health").lower()
    assert "strict-transport-security: max-age=63072000" in headers
    assert re.search(r"^server: nginx\r?$", headers, re.MULTILINE)
    error_page = run_ok(host, f"curl -sS http://{DOMAIN}/.well-known/acme-challenge/none")
    assert "nginx" in error_page and "nginx/" not in error_page


def test_access_log_is_json_and_skips_health(host):
    probe = uuid.uuid4().hex
    curl(host, f"--fail -o /dev/null {HTTPS}/health?probe={probe}")
    curl(host, f"--fail -o /dev/null {HTTPS}/v1/log-probe-{probe}")
    lines = [line for line in host.file(ACCESS_LOG).content_string.splitlines() if probe in line]
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["uri"] == f"/v1/log-probe-{probe}"
    assert entry["status"] == 200
    assert entry["upstream_addr"] in ("127.0.0.1:8000", "127.0.0.1:8001")
    assert entry["ssl_protocol"] == "TLSv1.3"


def test_writes_are_rate_limited_with_the_api_error_body(host):
    url = f"{HTTPS}/v1/corrections"
    last_body = "/tmp/edge-rate-limited.json"
    posts = codes(host, url, 60, method="POST", last_body=last_body)
    assert posts.count("200") >= 20 and posts[-1] == "429", posts
    assert json.loads(host.file(last_body).content_string)["error"]["code"] == "RATE_LIMITED"
    assert codes(host, url, 60) == ["200"] * 60


def test_metrics_only_from_allowed_networks(host):
    local = curl(host, f"--resolve {DOMAIN}:443:127.0.0.1 -o /dev/null -w '%{{http_code}}' {HTTPS}/metrics")
    assert local == "200"
    via_network = curl(host, f"-o /dev/null -w '%{{http_code}}' {HTTPS}/metrics")
    assert via_network == "403"


def test_a_stopped_instance_loses_no_request(host):
    run_ok(host, "systemctl stop stet-edge-backend@8001")
    try:
        gets = codes(host, f"{HTTPS}/v1/failover", 100)
        # Not sent to the dead instance (connection refused), so nginx passes POSTs on too.
        posts = codes(host, f"{HTTPS}/v1/failover-write", 10, method="POST")
        ports = {json.loads(curl(host, f"--fail {HTTPS}/v1/who"))["port"] for _ in range(5)}
    finally:
        run_ok(host, "systemctl start stet-edge-backend@8001")
    assert gets == ["200"] * 100
    assert posts == ["200"] * 10
    assert ports == {8000}


def test_one_renewal_scheduler(host):
    timer = host.service("certbot.timer")
    assert timer.is_enabled and timer.is_running
    cron_jobs = run_ok(host, "grep -rl certbot /etc/cron.d /etc/crontab /var/spool/cron 2>/dev/null || true")
    assert cron_jobs.strip() == ""


def test_renewal_through_the_timers_environment_reloads_nginx(host):
    before = served_serial(host)
    environment = run_ok(host, "systemctl show -P Environment certbot.service").strip()
    assert "REQUESTS_CA_BUNDLE=" in environment
    run_ok(host, f"env {environment} certbot renew --force-renewal --no-random-sleep-on-renew")
    after = served_serial(host)
    on_disk = run_ok(host, f"openssl x509 -noout -serial -in /etc/letsencrypt/live/{DOMAIN}/cert.pem").strip()
    assert after != before
    assert after == on_disk


def test_expiry_check_passes_for_the_served_certificate(host):
    assert host.service("certbot-expiry-check.timer").is_running
    run_ok(host, "systemctl start certbot-expiry-check.service")
    command = run_ok(host, "systemctl show -P ExecStart certbot-expiry-check.service")
    assert f"-checkend {14 * 86400}" in command
    assert f"/etc/ssl/stet/{DOMAIN}/fullchain.pem" in command


def test_firewall_allows_http_and_https(host):
    status = run_ok(host, "ufw status")
    assert "Status: active" in status
    for port in ("80/tcp", "443/tcp"):
        assert re.search(rf"^{port}\s+ALLOW\s+Anywhere", status, re.MULTILINE), status
