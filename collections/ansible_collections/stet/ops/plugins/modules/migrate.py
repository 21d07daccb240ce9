#!/usr/bin/python
# Copyright: STET Ops contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# Ansible modules open with their documentation strings, so imports come after them.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: migrate
short_description: Apply ordered NNN_name.sql migrations to PostgreSQL, with a ledger
version_added: 1.0.0
description:
  - Applies the C(NNN_name.sql) files of a directory in version order to a PostgreSQL database
    and records each one in the ledger table C(public.schema_migrations) (version, name,
    sha256 checksum of the file bytes, time applied, baselined flag).
  - Only files missing from the ledger run; when none is pending the result is unchanged.
  - Each file runs in its own transaction together with its ledger row. A failing file is
    rolled back, is not recorded, and the error names the file, the statement and its line.
    Files applied before it in the same run stay applied.
  - A PostgreSQL advisory lock, held by a second connection for the whole run, serialises
    concurrent runs (for example one per API host). The first run applies the files; the
    others wait, then find nothing pending. The lock is transaction-scoped, so the module
    also works through a PgBouncer in transaction pooling mode.
  - A file whose checksum differs from the one recorded when it was applied is an error
    (drift), unless O(allow_checksum_drift=true).
  - O(baseline) adopts a database that was migrated by hand, for example with C(psql -f);
    files up to that version are recorded as baselined without running them.
  - Files may wrap their content in C(BEGIN; ... COMMIT;), which is dropped since the module
    provides the transaction; other transaction control, statements that cannot run inside a
    transaction (C(CREATE INDEX CONCURRENTLY), C(VACUUM)) and C(BEGIN ATOMIC) function bodies
    are not supported.
author:
  - STET Ops team (@stet-ops)
extends_documentation_fragment:
  - stet.ops.postgres
attributes:
  check_mode:
    description: Lists the pending files and the statements they hold; nothing is written.
    support: full
  diff_mode:
    description: Shows the ledger before and after the run.
    support: full
options:
  path:
    description:
      - Directory, on the managed host, holding the C(NNN_name.sql) files. Files not ending
        in C(.sql) are ignored; a C(.sql) file with another name is an error.
    type: path
    required: true
  baseline:
    description:
      - Version up to which the database already holds the schema (migrated by hand).
        Files up to this version that are not in the ledger are recorded with
        C(baselined=true) and are not run; later files are applied as usual.
      - Must be the version of one of the files. Keeping it set on later runs is harmless.
    type: int
  allow_checksum_drift:
    description:
      - Go on when an applied file has changed since it was applied; the drifted files are
        reported as a warning and in RV(drifted), and the ledger keeps the old checksums.
      - By default drift fails the run before anything is applied.
    type: bool
    default: false
  lock_timeout:
    description:
      - Seconds to wait for the migration lock held by another run before failing.
    type: int
    default: 300
notes:
  - The statements of the files appear in RV(executed_commands); do not put secrets (such as
    role passwords) in migration files.
  - Its own transactions run without C(statement_timeout) and
    C(idle_in_transaction_session_timeout), both set locally to 0. The bounds a role has for its
    requests (the C(postgresql) role gives the application role 5 s and 10 s) would otherwise
    cut a long migration, the wait for the lock, or the lock itself short.
seealso:
  - name: STET interfaces (ledger table)
    description: The ledger is read by the API's C(/ready) endpoint.
    link: https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS
"""

EXAMPLES = r"""
- name: Apply the API's migrations, connecting with the URL the API itself uses
  stet.ops.migrate:
    path: /opt/stet/current/migrations
    dsn_file: /etc/stet/secrets/database_url
  register: migration

- name: Show what would run, without running it
  stet.ops.migrate:
    path: /opt/stet/current/migrations
    login_host: db1.internal
    login_user: stet
    login_password: "{{ vault_stet_db_password }}"
    db: stet
    ssl_mode: verify-full
    ca_cert: /etc/ssl/certs/stet-db-ca.pem
  check_mode: true
  diff: true

- name: Adopt a database migrated by hand with psql up to 002_add_origin.sql
  stet.ops.migrate:
    path: /opt/stet/current/migrations
    dsn_file: /etc/stet/secrets/database_url
    baseline: 2
"""

RETURN = r"""
applied:
  description: Files applied by this run, in order (empty in check mode).
  returned: always
  type: list
  elements: dict
  sample: [{version: 4, name: expected_systems, file: 004_expected_systems.sql, checksum: 9f2c...}]
pending:
  description:
    - Files still pending after the run. In check mode, the files a real run would apply.
      After a failure, the failing file and the ones after it.
  returned: always
  type: list
  elements: dict
  sample: [{version: 5, name: api_keys, file: 005_api_keys.sql, checksum: 41ab...}]
baselined:
  description: Files recorded as baselined without running (in check mode, that would be).
  returned: always
  type: list
  elements: dict
drifted:
  description: Applied files whose checksum changed, with the checksum recorded in the ledger.
  returned: always
  type: list
  elements: dict
current_version:
  description: Highest version in the ledger after the run; null when nothing is recorded.
  returned: always
  type: int
  sample: 5
target_version:
  description: Highest version among the files.
  returned: always
  type: int
  sample: 5
executed_commands:
  description: The statements the run executed (in check mode, would execute), in order.
  returned: always
  type: list
  elements: str
  sample: ["ALTER TABLE corrections ADD COLUMN IF NOT EXISTS origin jsonb"]
failed_file:
  description: The file that failed and was rolled back.
  returned: on a failing statement
  type: str
  sample: 006_broken.sql
failed_statement:
  description: The statement that failed.
  returned: on a failing statement
  type: str
failed_line:
  description: Line of the file where the failing statement starts.
  returned: on a failing statement
  type: int
sqlstate:
  description: PostgreSQL error code of the failure.
  returned: on a failing statement
  type: str
  sample: 42703
"""

from ansible_collections.stet.ops.plugins.module_utils.migrations import (
    LedgerEntry,
    MigrationError,
    Plan,
    discover,
)
from ansible_collections.stet.ops.plugins.module_utils.postgres import connect, postgres_module, psycopg2
from ansible_collections.stet.ops.plugins.module_utils.sql_statements import (
    SqlSplitError,
    split_statements,
    unwrap_transaction,
)

LEDGER = "public.schema_migrations"
# One lock per database for every stet.ops.migrate run ("STETmigr" in ASCII).
MIGRATION_LOCK_KEY = 0x535445546D696772

CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS public.schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    baselined boolean NOT NULL DEFAULT false
)"""
RECORD = "INSERT INTO public.schema_migrations (version, name, checksum, baselined) VALUES (%s, %s, %s, %s)"


class MigrationFailed(Exception):
    def __init__(self, migration, statement, error):
        super().__init__(str(error))
        self.migration = migration
        self.statement = statement
        self.error = error


def read_ledger(connection):
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (LEDGER,))
        if not cursor.fetchone()[0]:
            return {}
        cursor.execute(
            "SELECT version, name, checksum, baselined FROM public.schema_migrations ORDER BY version"
        )
        return {row[0]: LedgerEntry(*row) for row in cursor.fetchall()}


def ledger_text(ledger):
    return "".join(
        f"{version:03d} {entry.name} {'baselined' if entry.baselined else 'applied'} {entry.checksum}\n"
        for version, entry in sorted(ledger.items())
    )


def projected_ledger_text(ledger, plan):
    projected = dict(ledger)
    for migration in plan.to_baseline:
        projected[migration.version] = LedgerEntry.recording(migration, baselined=True)
    for migration in plan.pending:
        projected[migration.version] = LedgerEntry.recording(migration, baselined=False)
    return ledger_text(projected)


def statements_of(plan):
    """Split every pending file before anything runs, so a malformed file stops the run early."""
    statements = {}
    for migration in plan.pending:
        try:
            text = migration.content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SqlSplitError(
                f"{migration.file_name} is not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from None
        try:
            statements[migration.version] = unwrap_transaction(split_statements(text))
        except SqlSplitError as exc:
            raise SqlSplitError(f"{migration.file_name}: {exc}") from None
    return statements


def lift_session_bounds(cursor):
    """No statement or idle-in-transaction timeout for the rest of this transaction."""
    cursor.execute(
        "SELECT set_config('statement_timeout', '0', true),"
        " set_config('idle_in_transaction_session_timeout', '0', true)"
    )


def acquire_lock(module, lock_connection):
    """Hold the migration lock in an open transaction of ``lock_connection`` until it ends."""
    with lock_connection.cursor() as cursor:
        lift_session_bounds(cursor)
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", (f"{module.params['lock_timeout']}s",))
        try:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        except psycopg2.errors.LockNotAvailable:
            lock_connection.rollback()
            module.fail_json(
                msg=f"another migration run has held the lock for more than {module.params['lock_timeout']}s"
            )


def apply_file(connection, migration, statements, executed):
    with connection.cursor() as cursor:
        lift_session_bounds(cursor)
        for statement in statements:
            try:
                cursor.execute(statement.text)
            except psycopg2.Error as error:
                connection.rollback()
                raise MigrationFailed(migration, statement, error) from None
            executed.append(statement.text)
        cursor.execute(RECORD, (migration.version, migration.name, migration.checksum, False))
    connection.commit()


def failure_message(failure):
    error = failure.error
    detail = (error.pgerror or str(error)).strip()
    return (
        f"{failure.migration.file_name} failed at the statement starting on line {failure.statement.line}: "
        f"{detail}\nStatement: {failure.statement.text}\n"
        f"The file was rolled back and is not recorded in {LEDGER}."
    )


def check_drift(module, plan):
    if not plan.drifted:
        return
    listing = ", ".join(
        f"{entry['file']} (recorded {entry['recorded_checksum'][:12]}, now {entry['checksum'][:12]})"
        for entry in plan.drifted
    )
    if not module.params["allow_checksum_drift"]:
        module.fail_json(
            msg=f"applied migrations changed on disk since they were applied: {listing}. "
            "Restore the files, or set allow_checksum_drift=true to go on anyway.",
            drifted=plan.drifted,
        )
    module.warn(f"applied migrations changed on disk since they were applied: {listing}")


def plan_result(ledger, plan):
    """The result fields that describe ``plan`` against ``ledger`` before anything runs."""
    return dict(
        changed=plan.has_work,
        pending=[migration.describe() for migration in plan.pending],
        baselined=[migration.describe() for migration in plan.to_baseline],
        drifted=plan.drifted,
        target_version=plan.target_version,
        current_version=max(ledger, default=None),
        diff=dict(
            before_header=LEDGER,
            after_header=LEDGER,
            before=ledger_text(ledger),
            after=projected_ledger_text(ledger, plan),
        ),
    )


def run(module, connection, files):
    params = module.params
    ledger = read_ledger(connection)
    plan = Plan(files, ledger, params["baseline"])
    check_drift(module, plan)
    statements = statements_of(plan)
    result = dict(plan_result(ledger, plan), applied=[], executed_commands=[])
    if plan.unknown_applied:
        module.warn(f"the ledger holds versions with no file in {params['path']}: {plan.unknown_applied}")
    if module.check_mode or not plan.has_work:
        result["executed_commands"] = [s.text for version in sorted(statements) for s in statements[version]]
        return result

    lock_connection = connect(module)
    try:
        acquire_lock(module, lock_connection)
        with connection, connection.cursor() as cursor:
            cursor.execute(CREATE_LEDGER)
        # Another run may have applied files while this one waited for the lock.
        ledger = read_ledger(connection)
        plan = Plan(files, ledger, params["baseline"])
        check_drift(module, plan)
        result.update(plan_result(ledger, plan))
        with connection, connection.cursor() as cursor:
            for migration in plan.to_baseline:
                cursor.execute(RECORD, (migration.version, migration.name, migration.checksum, True))
        for migration in plan.pending:
            apply_file(connection, migration, statements[migration.version], result["executed_commands"])
            result["applied"].append(migration.describe())
    except MigrationFailed as failure:
        result.update(
            changed=bool(result["applied"] or result["baselined"]),
            pending=[m.describe() for m in plan.pending if m.version >= failure.migration.version],
            failed_file=failure.migration.file_name,
            failed_statement=failure.statement.text,
            failed_line=failure.statement.line,
            sqlstate=failure.error.pgcode,
            current_version=max(read_ledger(connection), default=None),
        )
        module.fail_json(msg=failure_message(failure), **result)
    finally:
        lock_connection.rollback()
        lock_connection.close()
    result["pending"] = []
    result["current_version"] = max(read_ledger(connection))
    return result


def main():
    module = postgres_module(
        path=dict(type="path", required=True),
        baseline=dict(type="int"),
        allow_checksum_drift=dict(type="bool", default=False),
        lock_timeout=dict(type="int", default=300),
    )
    try:
        files = discover(module.params["path"])
    except (MigrationError, OSError) as exc:
        module.fail_json(msg=str(exc))
    connection = connect(module)
    try:
        module.exit_json(**run(module, connection, files))
    except (MigrationError, SqlSplitError) as exc:
        module.fail_json(msg=str(exc))
    except psycopg2.Error as exc:
        module.fail_json(msg=f"PostgreSQL error while reading or writing {LEDGER}: {str(exc).strip()}")
    finally:
        connection.close()


if __name__ == "__main__":
    main()
