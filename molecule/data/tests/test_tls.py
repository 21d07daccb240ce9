"""Traffic between the platform's hosts is TLS with certificates from the platform's own CA
(pki role): each hop refuses plaintext, and a client that checks the certificate refuses a
name the certificate does not carry. Renewal signs again and the servers take it up."""

from __future__ import annotations

import time

import pytest
from conftest import PRIMARY, address, ansible_playbook, run_ok, sql

CA_DIR = "/etc/stet/ca"
PKI_DIR = "/etc/ssl/stet-pki"
CA = f"{PKI_DIR}/ca.crt"
URL_FILE = "/etc/stet/secrets/database_url"
POSTGRESQL, PGBOUNCER = 5432, 6432
# Streaming replication connections over TLS / all of them.
STREAMING_OVER_TLS = (
    "SELECT count(*) FILTER (WHERE s.ssl) || '/' || count(*)"
    " FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) WHERE r.state = 'streaming'"
)


def connect(api, port: int, **options: str):
    """psql from the API host to the primary as the application role, never asking for a password."""
    settings = {"port": str(port), "dbname": "stet", "user": "stet", **options}
    conninfo = " ".join(f"{name}={value}" for name, value in settings.items())
    return api.run(f'psql -X -w "{conninfo}" -c "SELECT 1"')


def served_certificate(host, port: int) -> str:
    """Serial number of the certificate PostgreSQL or PgBouncer shows a client on this port."""
    return run_ok(
        host,
        f"openssl s_client -starttls postgres -connect {address(PRIMARY)}:{port} </dev/null 2>/dev/null"
        " | openssl x509 -noout -serial",
    )


def test_the_ca_key_stays_on_its_host_and_every_host_trusts_the_ca(primary, replica, api):
    key = api.file(f"{CA_DIR}/ca.key")
    assert (key.user, key.mode) == ("root", 0o600)
    assert api.file(CA_DIR).mode == 0o700
    for host in (primary, replica):
        assert not host.file(CA_DIR).exists
    issuers = {run_ok(host, f"openssl x509 -noout -subject -in {CA}") for host in (primary, replica, api)}
    assert issuers == {"subject=CN = STET platform CA"}


@pytest.mark.parametrize("name", ["postgresql", "pgbouncer", "pgbackrest"])
def test_each_service_key_is_made_on_the_host_and_readable_by_its_service_only(primary, name):
    key = primary.file(f"{PKI_DIR}/{name}.key")
    assert (key.user, key.group, key.mode) == ("postgres", "postgres", 0o600)
    run_ok(primary, f"openssl verify -CAfile {CA} {PKI_DIR}/{name}.crt")
    names = run_ok(primary, f"openssl x509 -noout -ext subjectAltName -in {PKI_DIR}/{name}.crt")
    assert f"DNS:{PRIMARY}" in names and f"IP Address:{address(PRIMARY)}" in names


def test_postgresql_refuses_a_plaintext_client(api):
    # Refused by pg_hba (hostssl lines only), before any password is asked for.
    result = connect(api, POSTGRESQL, host=address(PRIMARY), sslmode="disable")
    assert result.rc != 0 and "no pg_hba.conf entry" in result.stderr and "no encryption" in result.stderr


def test_pgbouncer_refuses_a_plaintext_client(api):
    result = connect(api, PGBOUNCER, host=address(PRIMARY), sslmode="disable")
    assert result.rc != 0 and "SSL required" in result.stderr


@pytest.mark.parametrize("port", [POSTGRESQL, PGBOUNCER])
def test_a_client_checking_the_certificate_accepts_the_hosts_names_and_refuses_another(api, port):
    checked = {"hostaddr": address(PRIMARY), "sslmode": "verify-full", "sslrootcert": CA}
    wrong = connect(api, port, host="db.wrong.example", **checked)
    assert wrong.rc != 0 and 'does not match host name "db.wrong.example"' in wrong.stderr
    # The certificate passes for the inventory name; only the missing password stops psql then.
    right = connect(api, port, host=PRIMARY, **checked)
    assert right.rc != 0 and "no password supplied" in right.stderr, right.stderr


def test_the_api_hosts_url_checks_pgbouncers_certificate_over_tls_1_3(api):
    url = run_ok(api, f"cat {URL_FILE}")
    assert url.endswith(f"?sslmode=verify-full&sslrootcert={CA}")
    info = run_ok(api, f'psql -X -d "$(cat {URL_FILE})" -c "\\conninfo"')
    assert "SSL connection (protocol: TLSv1.3" in info


def test_replication_streams_over_tls_with_the_primarys_certificate_checked(primary, replica):
    assert sql(primary, STREAMING_OVER_TLS) == "1/1"
    conninfo = sql(replica, "SHOW primary_conninfo")
    assert "sslmode=verify-full" in conninfo and f"sslrootcert={CA}" in conninfo


def test_a_certificate_due_for_renewal_is_signed_again_and_served_at_once(request, primary):
    before = served_certificate(primary, POSTGRESQL)
    # Every certificate of the role is due when renewal starts 400 days before expiry (365-day certificates).
    run = ansible_playbook(request, "postgresql.yml", "-e", "pki_cert_renew_days=400")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr
    after = served_certificate(primary, POSTGRESQL)
    assert after != before
    assert after == run_ok(primary, f"openssl x509 -noout -serial -in {PKI_DIR}/postgresql.crt")
    run_ok(primary, f"openssl verify -CAfile {CA} {PKI_DIR}/postgresql.crt")
    # The replica, cut off, connects again: its check accepts the new certificate.
    sql(primary, "SELECT pg_terminate_backend(pid) FROM pg_stat_replication")
    deadline = time.monotonic() + 60
    while sql(primary, STREAMING_OVER_TLS) != "1/1":
        assert time.monotonic() < deadline, "the replica did not stream again within 60 s"
        time.sleep(1)
