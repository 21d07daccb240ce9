"""fail2ban, chrony, unattended-upgrades, kernel settings and the secrets directory
(hardening role, both profiles)."""

from __future__ import annotations

import time

import pytest
from conftest import HARDENING_HOSTS, HARDENING_PROFILES, OUTSIDER

testinfra_hosts = HARDENING_HOSTS


@pytest.mark.parametrize("unit", ["fail2ban", "chrony", "unattended-upgrades"])
def test_service_is_active_and_enabled(host, unit):
    service = host.service(unit)
    assert service.is_running, unit
    assert service.is_enabled, unit


def test_fail2ban_runs_the_sshd_jail_on_the_journal(host, expected):
    jails = host.run("fail2ban-client status")
    assert jails.rc == 0, jails.stderr
    assert "Jail list:\tsshd" in jails.stdout
    journal = host.run("fail2ban-client get sshd journalmatch")
    assert journal.rc == 0 and "_SYSTEMD_UNIT=sshd.service" in journal.stdout
    assert host.run("fail2ban-client get sshd maxretry").stdout.strip() == expected["fail2ban_maxretry"]


def test_fail2ban_bans_a_host_guessing_users(api, outsider):
    """The API host fails logins on the outsider (maxretry 3) until the outsider bans it."""
    target, attacker = outsider, api
    port = str(HARDENING_PROFILES[OUTSIDER]["ssh_port"])
    attacker_ip = attacker.run("hostname -I").stdout.split()[0]
    read_banner = ("timeout 5 bash -c %s", f"exec 3<>/dev/tcp/{OUTSIDER}/{port} && head -c 8 <&3")
    # Before the ban the outsider's sshd answers the API host.
    assert attacker.run(*read_banner).stdout == "SSH-2.0-"
    try:
        for attempt in range(4):
            # Bounded: a ban that lands mid-handshake drops the packets, and ssh would wait out
            # TCP's retransmissions (15 minutes in one CI run).
            attacker.run(
                "timeout 10 ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                "-o ConnectTimeout=5 -p %s %s@%s true",
                port,
                f"nosuchuser{attempt}",
                OUTSIDER,
            )
        banned = ""
        for _ in range(20):
            banned = target.run("fail2ban-client get sshd banip").stdout
            if attacker_ip in banned.split():
                break
            time.sleep(0.5)
        assert attacker_ip in banned.split()
        # The ban is enforced: the attacker's connections no longer get an answer.
        blocked = attacker.run(*read_banner)
        assert blocked.rc != 0 and "SSH-2.0" not in blocked.stdout
    finally:
        target.run("fail2ban-client set sshd unbanip %s", attacker_ip)


def test_chrony_answers_and_uses_the_configured_sources(host, expected):
    tracking = host.run("chronyc tracking")
    assert tracking.rc == 0, tracking.stderr
    assert "Reference ID" in tracking.stdout
    config = host.run("chronyd -p -f /etc/chrony/chrony.conf")
    assert config.rc == 0, config.stderr
    for source in expected["chrony_sources"]:
        assert source in config.stdout
    # Containers have no CAP_SYS_TIME: the scenario runs chronyd without clock control.
    assert host.run("pgrep -a chronyd").stdout.rstrip().endswith("-x")


def test_unattended_security_upgrades_are_effective(host, expected):
    dump = host.run("apt-config dump")
    assert dump.rc == 0, dump.stderr
    assert 'APT::Periodic::Update-Package-Lists "1";' in dump.stdout
    assert 'APT::Periodic::Unattended-Upgrade "1";' in dump.stdout
    assert "label=Debian-Security" in dump.stdout
    assert f'Unattended-Upgrade::Automatic-Reboot "{expected["automatic_reboot"]}";' in dump.stdout
    dry_run = host.run("unattended-upgrade --dry-run --debug 2>&1 | grep -m1 'Allowed origins are'")
    assert "Debian-Security" in dry_run.stdout


def test_sysctl_file_holds_the_hardening_values(host, expected):
    lines = host.file("/etc/sysctl.d/90-stet-hardening.conf").content_string.splitlines()
    settings = dict(line.split(" = ", 1) for line in lines if " = " in line and not line.startswith("#"))
    assert settings["net.ipv4.ip_forward"] == expected["ip_forward"]
    for key, value in {
        "net.ipv4.conf.all.rp_filter": "1",
        "net.ipv4.conf.all.accept_redirects": "0",
        "net.ipv4.conf.all.accept_source_route": "0",
        "net.ipv4.tcp_syncookies": "1",
        "kernel.kptr_restrict": "2",
        "kernel.dmesg_restrict": "1",
        "fs.protected_symlinks": "1",
        "fs.protected_hardlinks": "1",
    }.items():
        assert settings[key] == value, key


def test_sysctl_file_names_only_keys_the_kernel_has(host):
    # The container's /proc/sys is read-only: writes fail, but a misspelt key reports "cannot stat".
    load = host.run("sysctl --load /etc/sysctl.d/90-stet-hardening.conf")
    assert "net.ipv4.tcp_syncookies" in load.stdout + load.stderr
    assert "cannot stat" not in load.stderr


def test_secrets_directory_is_root_only(host):
    secrets = host.file("/etc/stet/secrets")
    assert secrets.is_directory
    assert (secrets.user, secrets.group, secrets.mode) == ("root", "root", 0o700)
    # An unprivileged user cannot list it.
    assert host.run("setpriv --reuid=nobody --regid=nogroup --clear-groups ls /etc/stet/secrets").rc != 0
