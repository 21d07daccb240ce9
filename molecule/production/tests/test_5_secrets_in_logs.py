"""No secret the deployment knows is written to any log or journal of the production hosts,
after converge, idempotence and every operation the tests before this file ran (deploys,
rollbacks, a password rotation, scaling out; files run in name order)."""

from __future__ import annotations

import pytest
import secrets_in_logs

HOSTS = [
    "stet-prod-lb",
    "stet-prod-api1",
    "stet-prod-api2",
    "stet-prod-api3",
    "stet-prod-db1",
    "stet-prod-db2",
]


@pytest.fixture(scope="module")
def known_secrets() -> set[str]:
    return secrets_in_logs.known_secrets(HOSTS)


@pytest.mark.parametrize("name", HOSTS)
def test_no_secret_in_any_log_or_journal(name, known_secrets):
    secrets_in_logs.assert_no_secret_logged(name, known_secrets)
