"""No secret the deployment knows is written to any log or journal of the production hosts,
after converge, idempotence and every operation the tests before this file ran (deploys,
rollbacks, scaling out, a switchover and a lost leader; files run in name order). The
password rotation is the pilot's."""

from __future__ import annotations

import secrets_in_logs

HOSTS = [
    "stet-prod-lb",
    "stet-prod-api1",
    "stet-prod-api2",
    "stet-prod-api3",
    "stet-prod-db1",
    "stet-prod-db2",
]


test_no_secret_in_any_log_or_journal = secrets_in_logs.no_secret_logged_test(HOSTS)
