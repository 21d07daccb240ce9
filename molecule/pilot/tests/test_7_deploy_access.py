"""The pilot is reached over SSH as a real deployment is: the deploying user, key auth,
strict host keys, pipelining (molecule/shared/create.yml). site.yml hardened sshd twice
over that connection (converge, idempotence): the user must still get in, and a setting
that would lock it out must be refused before anything changes."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

import pytest
from conftest import API_HOST, DB_HOST, TOPOLOGY, playbook, run_ok

SSH_DIR = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "ssh"
SSHD_DROP_IN = "/etc/ssh/sshd_config.d/00-stet-hardening.conf"


def inventory_host(name: str) -> dict:
    result = subprocess.run(
        ["ansible-inventory", "-i", str(pathlib.Path(TOPOLOGY.inventory).parent), "--host", name],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(result.stdout)


def ssh(name: str, user: str, command: str, *options: str) -> subprocess.CompletedProcess:
    """One SSH login from the controller, as an operator would make it: no agent, no
    multiplexing (a fresh authentication every time), the host's own key checked."""
    address = inventory_host(name)["ansible_host"]
    return subprocess.run(
        [
            "ssh",
            "-F", "/dev/null",
            "-o", "BatchMode=yes",
            "-o", "ControlMaster=no",
            "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={SSH_DIR / 'known_hosts'}",
            "-i", str(SSH_DIR / "id_ed25519"),
            *options,
            f"{user}@{address}",
            command,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )  # fmt: skip


@pytest.mark.parametrize("name", [API_HOST, DB_HOST])
def test_site_yml_reached_the_host_over_ssh_as_the_deploying_user(name):
    variables = inventory_host(name)
    assert variables["ansible_connection"] == "ansible.builtin.ssh"
    assert variables["ansible_user"] == "stet-deploy"


@pytest.mark.parametrize("name", [API_HOST, DB_HOST])
def test_the_deploying_user_still_logs_in_with_its_key_and_sudo_after_hardening(name):
    result = ssh(name, "stet-deploy", "sudo -n true && echo in")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "in"


def test_root_and_passwords_are_refused_over_ssh():
    # root holds the same key for this test: only PermitRootLogin can refuse it.
    run_ok(API_HOST, "install -d -m 0700 /root/.ssh && cp /home/stet-deploy/.ssh/authorized_keys /root/.ssh/")
    try:
        as_root = ssh(API_HOST, "root", "true")
    finally:
        run_ok(API_HOST, "rm -f /root/.ssh/authorized_keys")
    assert as_root.returncode == 255
    assert "Permission denied" in as_root.stderr

    with_password = ssh(API_HOST, "stet-deploy", "true", "-o", "PubkeyAuthentication=no")
    assert with_password.returncode == 255
    # The server offers public keys only: no password or keyboard-interactive prompt.
    assert "Permission denied (publickey)" in with_password.stderr


def test_the_preflight_refuses_a_lockout_before_anything_changes():
    before = run_ok(API_HOST, f"md5sum {SSHD_DROP_IN}")
    result = playbook(
        "hardening.yml", "--limit", API_HOST, "-e", '{"hardening_ssh_allow_users": ["someone-else"]}'
    )
    assert result.returncode != 0
    assert "Refusing to harden sshd" in result.stdout
    assert "changed=0" in result.stdout
    assert run_ok(API_HOST, f"md5sum {SSHD_DROP_IN}") == before
    assert ssh(API_HOST, "stet-deploy", "true").returncode == 0
