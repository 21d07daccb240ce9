"""Traffic between the platform's hosts is TLS with certificates from the platform's own CA
(pki role): each hop refuses plaintext, and a client that checks the certificate refuses a
name the certificate does not carry. (Renewal, which signs again and the servers take up
with a reload: tests/test_postgresql.py.)"""

from __future__ import annotations

import pytest
from conftest import (
    API,
    CA,
    PGBOUNCER,
    PKI_DIR,
    POSTGRESQL,
    PRIMARY,
    STREAMING_OVER_TLS,
    address,
    run_ok,
    sql,
)

CA_DIR = "/etc/stet/ca"
URL_FILE = "/etc/stet/secrets/database_url"
PGBACKREST = 8432  # pgbackrest_tls_port
# curl's exit status when a connection opened but no answer came back (52 empty reply, 56
# connection reset): not 7 (refused) nor 28 (timed out).
CURL_NO_ANSWER = {52, 56}


def connect(api, port: int, **options: str):
    """psql from the API host to the primary as the application role, never asking for a password."""
    settings = {"port": str(port), "dbname": "stet", "user": "stet", **options}
    conninfo = " ".join(f"{name}={value}" for name, value in settings.items())
    return api.run(f'psql -X -w "{conninfo}" -c "SELECT 1"')


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


def test_pgbackrests_server_refuses_plaintext_and_a_client_certificate_of_another_ca(api):
    server = f"{address(PRIMARY)}:{PGBACKREST}"
    # pgBackRest greets a client ({"name":"pgBackRest",...}) once TLS is up: never in plaintext.
    plain = api.run(f"curl -sS --max-time 5 --http0.9 http://{server}/")
    assert plain.rc in CURL_NO_ANSWER and "pgBackRest" not in plain.stdout, (plain.rc, plain.stdout)
    wrong_name = f"db.wrong.example:{PGBACKREST}"
    wrong = api.run(
        f"curl -sS --max-time 5 --http0.9 --cacert {CA} --resolve {wrong_name}:{address(PRIMARY)}"
        f" https://{wrong_name}/"
    )
    assert wrong.rc == 60, (wrong.rc, wrong.stderr)
    # The repository host's own name, in a certificate another CA signed: refused in the handshake.
    run_ok(
        api,
        "cd /tmp && openssl req -x509 -newkey rsa:2048 -nodes -days 1 -keyout other-ca.key -out other-ca.crt"
        f" -subj /CN={API} 2>/dev/null && chown postgres other-ca.key other-ca.crt",
    )
    client = " ".join(
        f"--pg{n}-host-cert-file=/tmp/other-ca.crt --pg{n}-host-key-file=/tmp/other-ca.key" for n in (1, 2)
    )
    refused = api.run(f"runuser -u postgres -- pgbackrest --stanza=stet {client} check")
    assert refused.rc != 0 and "alert unknown ca" in refused.stdout + refused.stderr, (
        refused.stdout + refused.stderr
    )


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
