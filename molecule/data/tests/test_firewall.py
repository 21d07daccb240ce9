"""ufw on every host: enabled with deny-in/allow-out defaults and exactly the allow-list of
the host, as the hardening, postgresql and pgbouncer roles open it (computed here from the
hosts' addresses: SSH from anywhere, 5432 from the API and database hosts on both database
hosts, 6432 from the API host on the primary, pgBackRest's 8432 between the repository (the
API host) and the database hosts, and each profile's extra rules)."""

from __future__ import annotations

import re

import pytest
from conftest import ALL_HOSTS, API, OUTSIDER, PRIMARY, REPLICA, address

testinfra_hosts = [f"docker://{name}" for name in ALL_HOSTS]

ANYWHERE = "Anywhere"


@pytest.fixture(scope="module")
def allowed():
    """Host name -> the (port/proto, source) pairs ufw must allow in, no more, no less."""
    api, primary, replica = address(API), address(PRIMARY), address(REPLICA)
    postgresql = [("5432/tcp", source) for source in sorted({api, primary, replica})]
    pgbackrest_clients = [("8432/tcp", primary), ("8432/tcp", replica)]
    members = {PRIMARY: primary, REPLICA: replica, API: api}

    def etcd(name):
        return [("2379/tcp", source) for source in members.values()] + [
            ("2380/tcp", source) for member, source in members.items() if member != name
        ]

    return {
        PRIMARY: [("22/tcp", ANYWHERE), *postgresql, ("6432/tcp", api), ("8432/tcp", api), *etcd(PRIMARY)],
        REPLICA: [("22/tcp", ANYWHERE), *postgresql, ("8432/tcp", api), *etcd(REPLICA)],
        # stet_web's extra rule; the repository answers the database hosts.
        API: [("22/tcp", ANYWHERE), ("9100/tcp", "192.0.2.0/24"), *pgbackrest_clients, *etcd(API)],
        OUTSIDER: [("2222/tcp", ANYWHERE), ("8000:8001/tcp", "10.10.0.0/16"), ("51820/udp", ANYWHERE)],
    }


def ufw_status(host):
    # ufw.service may read inactive in a container after `ufw enable`: ufw itself is the truth.
    status = host.run("ufw status verbose")
    assert status.rc == 0, status.stderr
    return status.stdout


def test_ufw_is_active_with_safe_defaults(host):
    status = ufw_status(host)
    assert "Status: active" in status
    assert "Default: deny (incoming), allow (outgoing)" in status


def test_ufw_allows_exactly_the_expected_ports(host, allowed):
    rules = re.findall(r"^(\S+)\s+ALLOW IN\s+(\S+)", ufw_status(host), flags=re.MULTILINE)
    ipv4_rules = sorted(rule for rule in rules if "(v6)" not in rule[0])
    assert ipv4_rules == sorted(allowed[host.backend.get_hostname()])


def test_ufw_rules_are_loaded_in_the_kernel(host, allowed):
    """Every allow rule, and only those, is an ACCEPT in the kernel's ufw-user-input chain."""
    chain = host.run("iptables -S ufw-user-input")
    assert chain.rc == 0, chain.stderr
    loaded = set()
    for line in chain.stdout.splitlines():
        if not line.endswith("-j ACCEPT"):
            continue
        source = re.search(r" -s (\S+)", line)
        port = re.search(r" --dports? (\S+)", line)
        proto = re.search(r" -p (\S+)", line)
        assert port and proto, line
        source_text = ANYWHERE if source is None else source.group(1).removesuffix("/32")
        loaded.add((f"{port.group(1)}/{proto.group(1)}", source_text))
    assert loaded == set(allowed[host.backend.get_hostname()])
