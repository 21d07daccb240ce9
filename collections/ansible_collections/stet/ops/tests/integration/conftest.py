"""Integration harness: real ansible-playbook runs against a real PostgreSQL and a real API.

Needs STET_TEST_DATABASE_URL (a superuser URL, from scripts/test-postgres start). Every
test database is owned by its own role with a random password, and every playbook run
asserts that this password never appears in Ansible's output.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest
import requests

HERE = Path(__file__).resolve().parent
PLAYBOOKS = HERE / "playbooks"
REPOSITORY = HERE.parents[5]
API_MIGRATIONS = REPOSITORY / "api" / "migrations"


def superuser_url():
    url = os.environ.get("STET_TEST_DATABASE_URL")
    if not url:
        pytest.fail("STET_TEST_DATABASE_URL is not set: run scripts/test-postgres start and export its URL")
    return url


def admin_execute(*statements):
    """Run (sql, parameters) pairs as the superuser in autocommit; return the last one's rows."""
    connection = psycopg2.connect(superuser_url())
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            for sql, parameters in statements:
                cursor.execute(sql, parameters)
            return cursor.fetchall() if cursor.description else None
    finally:
        connection.close()


class Database:
    """A fresh database owned by a fresh role; ``dsn_file`` holds its URL (mode 0600)."""

    def __init__(self, directory):
        self.name = f"stet_it_{uuid.uuid4().hex[:12]}"
        self.password = secrets.token_urlsafe(24)
        admin = urlsplit(superuser_url())
        admin_execute(
            (f"CREATE ROLE {self.name} LOGIN PASSWORD %s", (self.password,)),
            (f"CREATE DATABASE {self.name} OWNER {self.name}", None),
        )
        netloc = f"{self.name}:{self.password}@{admin.hostname}:{admin.port}"
        self.url = urlunsplit(("postgresql", netloc, f"/{self.name}", "", ""))
        self.dsn_file = directory / f"{self.name}.url"
        self.dsn_file.write_text(self.url + "\n")
        self.dsn_file.chmod(0o600)

    def query(self, sql, parameters=None):
        with psycopg2.connect(self.url) as connection, connection.cursor() as cursor:
            cursor.execute(sql, parameters)
            rows = cursor.fetchall() if cursor.description else None
        connection.close()
        return rows

    def ledger(self):
        return self.query("SELECT version, name, baselined FROM public.schema_migrations ORDER BY version")

    def run_file_with_psql(self, path):
        """Apply a file the guide's way (psql -f), outside the migrate module."""
        subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", self.url, "-f", str(path)], check=True)

    def drop(self):
        admin_execute(
            (f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)", None),
            (f"DROP ROLE IF EXISTS {self.name}", None),
        )


class PlaybookRun:
    def __init__(self, completed):
        self.rc = completed.returncode
        self.output = completed.stdout + completed.stderr
        report = json.loads(completed.stdout)
        self.results = [task["hosts"]["localhost"] for task in report["plays"][0]["tasks"]]
        self.result = self.results[-1]

    @property
    def failed(self):
        return bool(self.result.get("failed"))


def playbook_command(playbook, variables, check=False, diff=False):
    variables = {"ansible_python_interpreter": sys.executable, **variables}
    command = ["ansible-playbook", "-i", "localhost,", "-c", "local", str(PLAYBOOKS / playbook)]
    command += ["-e", json.dumps(variables, default=str)]
    return command + (["--check"] if check else []) + (["--diff"] if diff else [])


def playbook_environment():
    return dict(os.environ, ANSIBLE_CONFIG=str(HERE / "ansible.cfg"), ANSIBLE_NOCOLOR="1")


def finish(completed, secrets_to_hide):
    for secret in secrets_to_hide:
        assert secret not in completed.stdout + completed.stderr, "a secret appeared in Ansible's output"
    return PlaybookRun(completed)


@pytest.fixture
def run_playbook():
    """Run a playbook of playbooks/ on localhost; returns its last task's result."""
    hidden = []

    def run(playbook, variables, check=False, diff=False, secrets_to_hide=()):
        hidden.extend(secrets_to_hide)
        completed = subprocess.run(
            playbook_command(playbook, variables, check, diff),
            env=playbook_environment(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return finish(completed, hidden)

    return run


@pytest.fixture
def database(tmp_path):
    created = Database(tmp_path)
    yield created
    created.drop()


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_healthy(url, process, deadline_seconds=30):
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the API exited with {process.returncode} before answering /health")
        try:
            if requests.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass  # bound but its workers not booted yet
        time.sleep(0.2)
    pytest.fail(f"the API did not answer /health within {deadline_seconds}s")


PGBOUNCER_INI = """[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {directory}/userlist.txt
pool_mode = transaction
default_pool_size = 4
logfile = {directory}/pgbouncer.log
pidfile = {directory}/pgbouncer.pid
"""


@pytest.fixture
def pgbouncer_dsn_file(database):
    """A DSN file for ``database`` through a real PgBouncer in transaction pooling mode."""
    if shutil.which("pgbouncer") is None:
        pytest.fail("pgbouncer is not installed (apt-get install pgbouncer)")
    # PgBouncer refuses to run as root; its files must then belong to the user it runs as.
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    directory = Path(tempfile.mkdtemp(prefix="stet-pgbouncer-"))
    server = urlsplit(superuser_url())
    listen_port = free_port()
    settings = dict(host=server.hostname, port=server.port, listen_port=listen_port, directory=directory)
    (directory / "pgbouncer.ini").write_text(PGBOUNCER_INI.format(**settings))
    userlist = directory / "userlist.txt"
    userlist.write_text(f'"{database.name}" "{database.password}"\n')
    userlist.chmod(0o600)
    if run_as:
        shutil.chown(directory, "postgres")
        for path in directory.iterdir():
            shutil.chown(path, "postgres")
    bouncer = subprocess.Popen([*run_as, "pgbouncer", str(directory / "pgbouncer.ini")])
    dsn_file = directory / "through-pgbouncer.url"
    dsn_file.write_text(database.url.replace(f":{server.port}/", f":{listen_port}/") + "\n")
    dsn_file.chmod(0o600)
    try:
        wait_for_port(listen_port, bouncer)
        yield dsn_file
    finally:
        bouncer.terminate()
        bouncer.wait(timeout=10)
        shutil.rmtree(directory)


def wait_for_port(port, process, deadline_seconds=10):
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the process meant to listen on {port} exited with {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    pytest.fail(f"nothing listens on 127.0.0.1:{port} after {deadline_seconds}s")


class RunningApi:
    def __init__(self, url, database):
        self.url = url
        self.database = database

    def call(self, method, path, tenant_id, token=None):
        """A direct HTTP call, for what no module does (registering an expected system)."""
        headers = {"X-Tenant-Id": tenant_id}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, f"{self.url}{path}", headers=headers, timeout=5).status_code


@pytest.fixture(scope="session")
def api(tmp_path_factory):
    """The real API under its server (stet_api.server) on loopback, migrated by stet.ops.migrate."""
    if not (API_MIGRATIONS.is_dir() and any(API_MIGRATIONS.glob("*.sql"))):
        pytest.fail(f"{API_MIGRATIONS} holds no migrations yet: the API is not ready")
    directory = tmp_path_factory.mktemp("api")
    database = Database(directory)
    migrated = subprocess.run(
        playbook_command("migrate.yml", dict(migrations_path=API_MIGRATIONS, dsn_file=database.dsn_file)),
        env=playbook_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stdout[-3000:]
    url = f"http://127.0.0.1:{free_port()}"
    environment = dict(
        os.environ,
        DATABASE_URL_FILE=str(database.dsn_file),
        STET_HEARTBEAT_INTERVAL_SECONDS="60",
        STET_HEARTBEAT_GRACE_MULTIPLIER="2",
        STET_AUTH_REQUIRED="true",
        STET_AUTH_CACHE_SECONDS="1",  # a key's scope change is seen within a second
        STET_ENV="integration",
        STET_SERVER_BIND=url.removeprefix("http://"),
        STET_SERVER_WORKERS="2",
    )
    environment.pop("DATABASE_URL", None)
    log = open(directory / "server.log", "w")  # noqa: SIM115 - lives as long as the server
    server = subprocess.Popen(
        [sys.executable, "-m", "stet_api.server"], env=environment, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_until_healthy(url, server)
        yield RunningApi(url, database)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        database.drop()
