"""No secret the deployment knows is written to any log or journal of the pilot's hosts,
after converge, idempotence and every operation the tests before this file ran (deploys,
backups, a restore under load, failed logins, alerts; files run in name order)."""

from __future__ import annotations

import secrets_in_logs
from conftest import API_HOST, DB_HOST

HOSTS = [API_HOST, DB_HOST]


test_no_secret_in_any_log_or_journal = secrets_in_logs.no_secret_logged_test(HOSTS)
