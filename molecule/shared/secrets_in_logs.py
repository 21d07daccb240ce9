"""Every secret the deployment holds, read from the hosts, and where any of them shows up in
a log file or the journal. Used by each scenario's last test module: after converge,
idempotence and every operation the tests before it ran."""

from __future__ import annotations

import functools
import subprocess
from urllib.parse import urlsplit

import pytest

# Where the roles keep secrets: every file is one, a URL's password is one too, and so is
# the password field of a .pgpass line (host:port:database:user:password); each base64 line
# of a private key (the platform CA's and every service's) as well, and Alertmanager's
# delivery secrets (webhook, smarthost).
SECRET_FILES = (
    "/etc/stet/secrets/* /var/lib/postgresql/.pgpass /etc/stet/ca/ca.key /etc/ssl/stet-pki/*.key"
    " /etc/prometheus/alertmanager-secrets/*"
)
# Shorter values (a port, a flag) would match by chance.
MIN_SECRET_LENGTH = 12


def docker_exec(name: str, command: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "exec", "-i", name, "sh", "-c", command],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def secrets_of(name: str) -> set[str]:
    """The secrets kept on one host."""
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


@functools.cache
def known_secrets(names: tuple[str, ...]) -> set[str]:
    """The secrets of every host; at least the application and replication passwords."""
    secrets = set().union(*(secrets_of(name) for name in names))
    assert len(secrets) >= 2, "no secret found on the hosts"
    return secrets


def assert_no_secret_logged(name: str, secrets: set[str]) -> None:
    """No log file under /var/log (rotated and compressed ones too) and no journal line of the
    host holds any of the secrets."""
    patterns = "\n".join(sorted(secrets)) + "\n"
    # The patterns go through a root-only file on the host, never argv; -l and -c name where,
    # never what.
    in_files = docker_exec(
        name,
        'p=$(mktemp) && cat >"$p" && { grep -rlF -f "$p" /var/log;'
        ' find /var/log -type f -name "*.gz" -exec zgrep -lF -f "$p" {} +; } 2>/dev/null; rm -f "$p"',
        stdin=patterns,
    )
    journal = 'j=$(mktemp) && journalctl --no-pager -o cat >"$j"; grep -cF -f - "$j"; rm -f "$j"'
    in_journal = docker_exec(name, journal, stdin=patterns)
    assert in_files.stdout.strip() == "", f"{name}: secrets in {in_files.stdout.split()}"
    lines = in_journal.stdout.strip()
    assert lines == "0", f"{name}: {lines} journal lines hold a secret"


def no_secret_logged_test(names: list[str]):
    """The test a scenario's module exports: one case per host, against every host's secrets."""

    @pytest.mark.parametrize("name", names)
    def test_no_secret_in_any_log_or_journal(name):
        assert_no_secret_logged(name, known_secrets(tuple(names)))

    return test_no_secret_in_any_log_or_journal
