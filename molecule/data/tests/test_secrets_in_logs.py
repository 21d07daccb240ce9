"""No secret the deployment knows is written to any log or journal on any host after
converge, idempotence and what the tests before this file ran (backups, restores and
failed logins among them: files run in name order)."""

from __future__ import annotations

import subprocess
from urllib.parse import urlsplit

import pytest
from conftest import ALL_HOSTS

# Where the roles keep secrets: every file is one, a URL's password is one too, and so is
# the password field of a .pgpass line (host:port:database:user:password).
SECRET_FILES = "/etc/stet/secrets/* /var/lib/postgresql/.pgpass"
# Shorter values (a port, a flag) would match by chance.
MIN_SECRET_LENGTH = 12


def docker_exec(name: str, command: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "exec", "-i", name, "sh", "-c", command],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def secrets_of(name: str) -> set[str]:
    # NUL-separated file contents, read by root on the host: they never pass through argv.
    listing = docker_exec(
        name, f'for f in {SECRET_FILES}; do [ -f "$f" ] && cat "$f" && printf \'\\0\'; done; true'
    )
    found = set()
    for content in listing.stdout.split("\0"):
        for line in content.splitlines():
            value = line.strip()
            if "://" in value and urlsplit(value).password:
                found.add(urlsplit(value).password)
            elif value.count(":") == 4:
                found.add(value.rsplit(":", 1)[1])
            elif " " not in value and not value.startswith(("#", "[")):
                found.add(value)
    return {value for value in found if len(value) >= MIN_SECRET_LENGTH}


@pytest.fixture(scope="module")
def known_secrets() -> set[str]:
    secrets = set().union(*(secrets_of(name) for name in ALL_HOSTS))
    # The application and replication passwords at least: else this test proves nothing.
    assert len(secrets) >= 2, "no secret found on the hosts"
    return secrets


@pytest.mark.parametrize("name", ALL_HOSTS)
def test_no_secret_in_any_log_or_journal(name, known_secrets):
    patterns = "\n".join(sorted(known_secrets)) + "\n"
    # grep reads the patterns on stdin; -l and -c name where, never what.
    in_files = docker_exec(name, "grep -rlF -f - /var/log 2>/dev/null", stdin=patterns)
    journal = 'j=$(mktemp) && journalctl --no-pager -o cat >"$j"; grep -cF -f - "$j"; rm -f "$j"'
    in_journal = docker_exec(name, journal, stdin=patterns)
    assert in_files.stdout.strip() == "", f"{name}: secrets in {in_files.stdout.split()}"
    assert in_journal.stdout.strip() == "0", (
        f"{name}: {in_journal.stdout.strip()} journal lines hold a secret"
    )
