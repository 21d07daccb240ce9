"""No secret the deployment knows is written to any log or journal on any host after
converge, idempotence and what the tests before this file ran (backups, restores and a
certificate renewal among them: files run in name order)."""

from __future__ import annotations

import pytest
import secrets_in_logs
from conftest import ALL_HOSTS

test_no_secret_in_any_log_or_journal = secrets_in_logs.no_secret_logged_test(ALL_HOSTS)


def test_the_search_finds_a_secret_in_a_compressed_rotated_log():
    """The check above can fail: a secret in a log that logrotate compressed is found."""
    name = ALL_HOSTS[0]
    secret = sorted(secrets_in_logs.known_secrets(tuple(ALL_HOSTS)))[0]
    planted = "/var/log/stet-planted.log.2.gz"
    secrets_in_logs.docker_exec(name, f"gzip -c > {planted}", stdin=f"a line with {secret} in it\n")
    try:
        with pytest.raises(AssertionError, match=planted):
            secrets_in_logs.assert_no_secret_logged(name, {secret})
    finally:
        secrets_in_logs.docker_exec(name, f"rm -f {planted}")
