"""The etcd cluster on the three stet_dcs hosts: every member healthy, TLS with certificates
of the platform CA on both ports (plaintext and unknown clients refused), reachable from the
members and clients only, and a write acknowledged with one member down is on it once it
is back."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import testinfra
from conftest import API, PRIMARY, REPLICA, address, run_ok

MEMBERS = [PRIMARY, REPLICA, API]
PKI = "/etc/ssl/stet-pki"
ETCDCTL = (
    f"etcdctl --endpoints=https://127.0.0.1:2379 --cacert={PKI}/ca.crt"
    f" --cert={PKI}/etcd.crt --key={PKI}/etcd.key"
)


def etcdctl(name: str, arguments: str) -> str:
    return run_ok(testinfra.get_host(f"docker://{name}"), f"{ETCDCTL} {arguments}")


def test_three_members_named_after_the_inventory_and_peering_over_tls():
    members = json.loads(etcdctl(PRIMARY, "member list -w json"))["members"]
    assert sorted(m["name"] for m in members) == sorted(MEMBERS)
    for member in members:
        assert member["peerURLs"] == [f"https://{address(member['name'])}:2380"]
        assert member["clientURLs"] == [f"https://{address(member['name'])}:2379"]


@pytest.mark.parametrize("name", MEMBERS)
def test_every_member_is_healthy_and_sees_one_leader(name):
    status = json.loads(etcdctl(name, "endpoint status --cluster -w json"))
    assert len(status) == 3
    assert len({s["Status"]["leader"] for s in status}) == 1


@pytest.mark.parametrize("port", [2379, 2380])
def test_plaintext_and_clients_without_a_certificate_are_refused(api, port):
    target = f"{address(PRIMARY)}:{port}"
    plain = api.run(f"curl -sS --max-time 5 http://{target}/health")
    assert plain.rc != 0 or "HTTPS" in plain.stdout, plain.stdout
    anonymous = api.run(f"curl -sS --max-time 5 --cacert {PKI}/ca.crt https://{target}/health")
    assert anonymous.rc != 0, anonymous.stdout
    # With the member's certificate (issued by the CA) the client port answers.
    if port == 2379:
        health = run_ok(
            api,
            f"curl -sS --max-time 5 --cacert {PKI}/ca.crt --cert {PKI}/etcd.crt --key {PKI}/etcd.key"
            f" https://{target}/health",
        )
        assert json.loads(health)["health"] == "true"


def test_a_host_outside_the_members_and_clients_cannot_reach_any_port(primary, outsider):
    # 2381: the plain-HTTP metrics listener, open to the monitoring hosts only (none in this
    # scenario): it answers on the member itself.
    metrics = run_ok(primary, f"curl -sf --max-time 5 http://{address(PRIMARY)}:2381/metrics")
    assert "etcd_server_has_leader 1" in metrics
    for port in (2379, 2380, 2381):
        probe = outsider.run(f"timeout 3 bash -c '</dev/tcp/{address(PRIMARY)}/{port}'")
        assert probe.rc != 0, f"port {port} reachable from the outsider"


def test_a_write_acknowledged_with_one_member_down_is_on_it_when_it_is_back(replica):
    key, value = "/stet-test/quorum", uuid.uuid4().hex
    run_ok(replica, "systemctl stop etcd")
    try:
        # Two of three members: still a quorum, so the write is acknowledged.
        assert etcdctl(PRIMARY, f"put {key} {value}") == "OK"
    finally:
        run_ok(replica, "systemctl start etcd")
    deadline = time.monotonic() + 30
    while True:
        seen = replica.run(f"{ETCDCTL} get {key} --print-value-only --consistency=s")
        if seen.rc == 0 and seen.stdout.strip() == value:
            break
        assert time.monotonic() < deadline, f"the member did not catch up: {seen.stdout}{seen.stderr}"
        time.sleep(1)
    etcdctl(PRIMARY, f"del {key}")
