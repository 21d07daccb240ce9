"""ufw: enabled with deny-in/allow-out defaults and exactly the allow-list of the host."""

import re


def ufw_status(host):
    # ufw.service may read inactive in a container after `ufw enable`: ufw itself is the truth.
    status = host.run("ufw status verbose")
    assert status.rc == 0, status.stderr
    return status.stdout


def test_ufw_is_active_with_safe_defaults(host):
    status = ufw_status(host)
    assert "Status: active" in status
    assert "Default: deny (incoming), allow (outgoing)" in status


def test_ufw_allows_exactly_the_expected_ports(host, expected):
    rules = re.findall(r"^(\S+)\s+ALLOW IN\s+(\S+)", ufw_status(host), flags=re.MULTILINE)
    ipv4_rules = sorted(rule for rule in rules if "(v6)" not in rule[0])
    assert ipv4_rules == sorted(expected["ufw_rules"])


def test_ufw_rules_are_loaded_in_the_kernel(host, expected):
    chains = host.run("iptables -S ufw-user-input")
    assert chains.rc == 0, chains.stderr
    assert f"--dport {expected['ssh_port']} -j ACCEPT" in chains.stdout
