"""No secret the deployment knows is written to any log or journal on any host after
converge, idempotence and what the tests before this file ran (backups, restores, certificate
renewal and failed logins among them: files run in name order)."""

from __future__ import annotations

import secrets_in_logs
from conftest import ALL_HOSTS

test_no_secret_in_any_log_or_journal = secrets_in_logs.no_secret_logged_test(ALL_HOSTS)
