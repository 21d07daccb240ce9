"""Hosts of the data scenario, by role, for tests that look at one host from another.

Every host also runs the hardening role: the API-side client with its defaults (plus the
ufw rule of the stet_web group), the outsider with every knob flipped (../molecule.yml).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import testinfra

PRIMARY = "stet-data-primary"
REPLICA = "stet-data-replica"
API = "stet-data-api"
OUTSIDER = "stet-data-outsider"
ALL_HOSTS = [PRIMARY, REPLICA, API, OUTSIDER]
SCRIPTS = "/opt/stet/scripts"
PKI_DIR = "/etc/ssl/stet-pki"
CA = f"{PKI_DIR}/ca.crt"
POSTGRESQL, PGBOUNCER = 5432, 6432
# Streaming replication connections over TLS / all of them.
STREAMING_OVER_TLS = (
    "SELECT count(*) FILTER (WHERE s.ssl) || '/' || count(*)"
    " FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) WHERE r.state = 'streaming'"
)
SCENARIO = Path(__file__).resolve().parents[1]
REPOSITORY = SCENARIO.parents[1]
# The helpers the scenarios share (secrets_in_logs).
sys.path.insert(0, str(REPOSITORY / "molecule" / "shared"))

# The hardening role's two profiles: what each of their hosts must look like.
HARDENING_PROFILES = {
    API: {
        "ssh_port": 22,
        "permit_root_login": {"no"},
        "max_auth_tries": "2",
        "client_alive_interval": "300",
        "allow_groups": "sudo",
        "host_keys": ["/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_rsa_key"],
        "moduli_min_bits": 3072,
        "fail2ban_maxretry": "5",
        "chrony_sources": ["pool 2.debian.pool.ntp.org"],
        "automatic_reboot": "false",
        "ip_forward": "0",
    },
    OUTSIDER: {
        "ssh_port": 2222,
        # sshd -T prints prohibit-password under its older name.
        "permit_root_login": {"prohibit-password", "without-password"},
        "max_auth_tries": "3",
        "client_alive_interval": "120",
        "allow_groups": "root stet-ssh",
        "host_keys": ["/etc/ssh/ssh_host_ed25519_key"],
        "moduli_min_bits": 4096,
        "fail2ban_maxretry": "3",
        "chrony_sources": ["server ntp.example.invalid"],
        "automatic_reboot": "true",
        "ip_forward": "1",
    },
}
# testinfra_hosts of the modules that test the hardening role on both profiles.
HARDENING_HOSTS = [f"docker://{name}" for name in HARDENING_PROFILES]


@pytest.fixture
def expected(host):
    """The hardening profile of the host under test."""
    return HARDENING_PROFILES[host.backend.get_hostname()]


def address(name: str) -> str:
    """The host's private IPv4 address (the one the roles open ports to)."""
    return run_ok(_host(name), "hostname -I | awk '{print $1}'")


def _host(name: str):
    # docker exec per command: several times faster than testinfra's ansible backend.
    return testinfra.get_host(f"docker://{name}")


@pytest.fixture(scope="session")
def primary():
    return _host(PRIMARY)


@pytest.fixture(scope="session")
def replica():
    return _host(REPLICA)


@pytest.fixture(scope="session")
def api():
    return _host(API)


@pytest.fixture(scope="session")
def outsider():
    return _host(OUTSIDER)


def run_ok(host, command: str) -> str:
    """Run a command, fail the test with its output unless it exits 0, return stdout."""
    result = host.run(command)
    assert result.rc == 0, f"{command!r} exited {result.rc}: {result.stdout}{result.stderr}"
    return result.stdout.strip()


def sql(host, query: str, db: str = "stet", **variables: str) -> str:
    """Run one statement as postgres (peer) and return its unaligned, tuples-only output.

    Values go in as psql variables (`:'name'` in the query), never into the SQL text.
    """
    options = " ".join(f"-v {name}={_quote(value)}" for name, value in variables.items())
    # Read from stdin: psql interpolates variables there, not in -c.
    return run_ok(
        host,
        f"printf '%s\\n' {_quote(query)}"
        f" | runuser -u postgres -- psql -X -q -A -t -v ON_ERROR_STOP=1 {options} -d {db}",
    )


def served_certificate(host, port: int) -> str:
    """Serial number of the certificate PostgreSQL or PgBouncer shows a client on this port."""
    return run_ok(
        host,
        f"openssl s_client -starttls postgres -connect {address(PRIMARY)}:{port} </dev/null 2>/dev/null"
        " | openssl x509 -noout -serial",
    )


def wait_for_streaming_over_tls(primary) -> None:
    deadline = time.monotonic() + 60
    while sql(primary, STREAMING_OVER_TLS) != "1/1":
        assert time.monotonic() < deadline, "the replica did not stream again over TLS within 60 s"
        time.sleep(1)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def ansible_playbook(request, playbook: str, *arguments: str) -> subprocess.CompletedProcess:
    """Run one of the scenario's playbooks against its hosts, as Molecule's converge does."""
    return subprocess.run(
        [
            "ansible-playbook",
            "--inventory",
            request.config.option.ansible_inventory,
            *arguments,
            str(SCENARIO / playbook),
        ],
        cwd=REPOSITORY,
        env={
            **os.environ,
            "ANSIBLE_ROLES_PATH": str(REPOSITORY / "roles"),
            "ANSIBLE_COLLECTIONS_PATH": str(REPOSITORY / "collections"),
            "ANSIBLE_NOCOLOR": "1",
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
