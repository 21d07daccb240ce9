"""sshd (hardening role, both profiles): effective settings from `sshd -T`, what a client
actually gets offered, and the Diffie-Hellman moduli left to group exchange."""

from __future__ import annotations

import pytest
from conftest import HARDENING_HOSTS

testinfra_hosts = HARDENING_HOSTS

SSH_CLIENT = (
    "ssh -o BatchMode=yes -o ConnectTimeout=5 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
)


def effective_sshd_config(host):
    result = host.run("/usr/sbin/sshd -T -C user=root,host=localhost,addr=127.0.0.1")
    assert result.rc == 0, result.stderr
    # Keys given several times (allowgroups, port) come one value per line.
    settings = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition(" ")
        settings[key] = f"{settings[key]} {value}" if key in settings else value
    return settings


def test_sshd_service_is_active_and_enabled(host):
    sshd = host.service("ssh")
    assert sshd.is_running
    assert sshd.is_enabled


def test_sshd_effective_settings(host, expected):
    settings = effective_sshd_config(host)
    assert settings["port"] == str(expected["ssh_port"])
    assert settings["permitrootlogin"] in expected["permit_root_login"]
    assert settings["maxauthtries"] == expected["max_auth_tries"]
    assert settings["clientaliveinterval"] == expected["client_alive_interval"]
    assert settings.get("allowgroups") == expected["allow_groups"]
    for key, value in {
        "passwordauthentication": "no",
        "kbdinteractiveauthentication": "no",
        "permitemptypasswords": "no",
        "authenticationmethods": "publickey",
        "x11forwarding": "no",
        "allowtcpforwarding": "no",
        "allowagentforwarding": "no",
        "permittunnel": "no",
        "logingracetime": "30",
        "clientalivecountmax": "3",
        "loglevel": "VERBOSE",
        "maxstartups": "10:30:60",
    }.items():
        assert settings[key] == value, key
    assert "cbc" not in settings["ciphers"]
    assert "sha1" not in settings["macs"] and "sha1" not in settings["kexalgorithms"]
    assert all(mac.endswith("-etm@openssh.com") for mac in settings["macs"].split(","))
    assert settings["hostkey"].split() == expected["host_keys"]
    assert settings["hostkeyalgorithms"] == "ssh-ed25519,rsa-sha2-512,rsa-sha2-256"


def test_sshd_listens_on_its_port_without_debian_banner(host, expected):
    read_banner = (
        "import socket, sys; "
        "print(socket.create_connection(('127.0.0.1', int(sys.argv[1])), 5).recv(64).decode())"
    )
    banner = host.run("python3 -c %s %s", read_banner, str(expected["ssh_port"]))
    assert banner.rc == 0, banner.stderr
    assert banner.stdout.startswith("SSH-2.0-OpenSSH_")
    assert "Debian" not in banner.stdout


def test_sshd_offers_public_keys_only(host, expected):
    attempt = host.run(f"{SSH_CLIENT} -v -p %s root@127.0.0.1 true", str(expected["ssh_port"]))
    assert attempt.rc == 255
    assert "Permission denied (publickey)." in attempt.stderr


# MACs only count with a non-AEAD cipher, hence the CTR cipher with the SHA-1 MAC.
@pytest.mark.parametrize(
    ("weak_offer", "refusal"),
    [
        ("Ciphers=aes128-cbc", "no matching cipher found"),
        ("Ciphers=aes128-ctr -o MACs=hmac-sha1", "no matching MAC found"),
        ("KexAlgorithms=diffie-hellman-group14-sha1", "no matching key exchange method found"),
    ],
)
def test_sshd_refuses_weak_algorithms(host, expected, weak_offer, refusal):
    attempt = host.run(f"{SSH_CLIENT} -o {weak_offer} -p %s root@127.0.0.1 true", str(expected["ssh_port"]))
    assert attempt.rc == 255
    assert refusal in attempt.stderr


def moduli_sizes(host) -> list[int]:
    """Modulus sizes in bits of /etc/ssh/moduli (its size column counts one bit less)."""
    sizes = host.run("awk '$1 !~ /^#/ && NF >= 7 {print $5 + 1}' /etc/ssh/moduli")
    assert sizes.rc == 0, sizes.stderr
    return [int(size) for size in sizes.stdout.split()]


def test_the_role_removed_the_moduli_under_the_minimum(host, expected):
    sizes = moduli_sizes(host)
    # Debian ships moduli of 2048, 3072, 4096, 6144, 7680 and 8192 bits: the smallest left is
    # exactly the profile's minimum (3072 or 4096), and every larger size is still there.
    assert min(sizes) == expected["moduli_min_bits"]
    assert {6144, 7680, 8192} <= set(sizes)
    assert host.file("/etc/ssh/moduli").content_string.startswith("#")
    # The package's copy had the small ones: dpkg sees the file as changed (checksum, "5").
    verify = host.run("dpkg --verify openssh-server")
    assert any(
        line.startswith("??5") and line.endswith(" /etc/ssh/moduli") for line in verify.stdout.splitlines()
    )
    moduli = host.file("/etc/ssh/moduli")
    assert (moduli.user, moduli.group, moduli.mode) == ("root", "root", 0o644)


def test_sshd_negotiates_group_exchange_from_the_remaining_moduli(host, expected):
    attempt = host.run(
        f"{SSH_CLIENT} -v -o KexAlgorithms=diffie-hellman-group-exchange-sha256 -p %s root@127.0.0.1 true",
        str(expected["ssh_port"]),
    )
    assert attempt.rc == 255
    assert "kex: algorithm: diffie-hellman-group-exchange-sha256" in attempt.stderr
    # The exchange completed (the server sent a group, keys were set) before authentication.
    assert "SSH2_MSG_KEX_DH_GEX_GROUP received" in attempt.stderr
    assert "Permission denied (publickey)." in attempt.stderr
