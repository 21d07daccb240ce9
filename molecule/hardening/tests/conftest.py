"""What each test host of the scenario must look like (its knobs are in ../molecule.yml)."""

import pytest

EXPECTED = {
    "stet-hardening-web": {
        "ssh_port": 22,
        "permit_root_login": {"no"},
        "max_auth_tries": "3",
        "client_alive_interval": "300",
        "allow_groups": None,
        "ufw_rules": [("22/tcp", "Anywhere"), ("9100/tcp", "192.0.2.0/24")],
        "fail2ban_maxretry": "5",
        "chrony_sources": ["pool 2.debian.pool.ntp.org"],
        "automatic_reboot": "false",
        "ip_forward": "0",
    },
    "stet-hardening-custom": {
        "ssh_port": 2222,
        # sshd -T prints prohibit-password under its older name.
        "permit_root_login": {"prohibit-password", "without-password"},
        "max_auth_tries": "2",
        "client_alive_interval": "120",
        "allow_groups": "root stet-ssh",
        "ufw_rules": [("2222/tcp", "Anywhere"), ("8000:8001/tcp", "10.10.0.0/16"), ("51820/udp", "Anywhere")],
        "fail2ban_maxretry": "3",
        "chrony_sources": ["server ntp.example.invalid"],
        "automatic_reboot": "true",
        "ip_forward": "1",
    },
}


@pytest.fixture
def expected(host):
    return EXPECTED[host.backend.get_hostname()]
