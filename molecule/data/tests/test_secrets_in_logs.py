"""No secret the deployment knows is written to any log or journal on any host after
converge, idempotence and what the tests before this file ran (backups, restores, certificate
renewal and failed logins among them: files run in name order)."""

from __future__ import annotations

import pytest
import secrets_in_logs
from conftest import ALL_HOSTS


@pytest.fixture(scope="module")
def known_secrets() -> set[str]:
    return secrets_in_logs.known_secrets(ALL_HOSTS)


@pytest.mark.parametrize("name", ALL_HOSTS)
def test_no_secret_in_any_log_or_journal(name, known_secrets):
    secrets_in_logs.assert_no_secret_logged(name, known_secrets)
