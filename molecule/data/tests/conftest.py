"""Hosts of the data scenario, by role, for tests that look at one host from another."""

from __future__ import annotations

import pytest
import testinfra

PRIMARY = "stet-data-primary"
SCRIPTS = "/opt/stet/scripts"


def _host(name: str):
    # docker exec per command: several times faster than testinfra's ansible backend.
    return testinfra.get_host(f"docker://{name}")


@pytest.fixture(scope="session")
def primary():
    return _host(PRIMARY)


@pytest.fixture(scope="session")
def replica():
    return _host("stet-data-replica")


@pytest.fixture(scope="session")
def api():
    return _host("stet-data-api")


@pytest.fixture(scope="session")
def outsider():
    return _host("stet-data-outsider")


def run_ok(host, command: str) -> str:
    """Run a command, fail the test with its output unless it exits 0, return stdout."""
    result = host.run(command)
    assert result.rc == 0, f"{command!r} exited {result.rc}: {result.stdout}{result.stderr}"
    return result.stdout.strip()


def sql(host, query: str, db: str = "stet", **variables: str) -> str:
    """Run one statement as postgres (peer) and return its unaligned, tuples-only output.

    Values go in as psql variables (`:'name'` in the query), never into the SQL text.
    """
    options = " ".join(f"-v {name}={_quote(value)}" for name, value in variables.items())
    # Read from stdin: psql interpolates variables there, not in -c.
    return run_ok(
        host,
        f"printf '%s\\n' {_quote(query)}"
        f" | runuser -u postgres -- psql -X -q -A -t -v ON_ERROR_STOP=1 {options} -d {db}",
    )


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"
