"""The connection pool: the only process-wide state of the app besides its caches.

Built for PgBouncer in transaction pooling: psycopg2 interpolates parameters on the
client (no server-side prepared statements) and every unit of work is one transaction,
so no session state outlives a transaction.

The bounds the database enforces are settings of the application role, not of the
requests: the postgresql role sets statement_timeout (5 s) and
idle_in_transaction_session_timeout (10 s) on it (ALTER ROLE ... SET), and PostgreSQL
applies them to every session the role opens, through PgBouncer too. Sending them with
each transaction instead (SET LOCAL in front of the statement) cost as much database time
as the read itself (docs/testing.md, "Benchmarks").

Bounds of the client side (defaults, config.py): a connection attempt waits at most 3 s
(connect_timeout), and a peer that stops answering at the network level is declared dead
after 3 + 2 x 1 = 5 s (TCP keepalives and tcp_user_timeout), the statement bound: a
request waits for the database at most about 8 s (a 3 s connection attempt, then 5 s on
the new connection).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras

from stet_api.errors import ApiError, DatabaseTimeout, DatabaseUnavailable, TransactionConflict

if TYPE_CHECKING:
    from stet_api.config import Settings

T = TypeVar("T")
Cursor = psycopg2.extensions.cursor
Connection = psycopg2.extensions.connection

# Errors raised by the driver about the server or the link, as opposed to SQL errors
# (constraint violations, bad data) which the routes handle or let surface as 500. A server
# that refuses writes (a standby, or a primary still recovering during a restore) is the
# server's state too, not the request's fault.
DRIVER_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError, psycopg2.errors.ReadOnlySqlTransaction)

psycopg2.extras.register_uuid()


def _timestamptz(value: str | None, cursor: Cursor) -> Any:
    """A timestamptz as a datetime, or as PostgreSQL's text when Python cannot hold it.

    Years outside 1..9999 (a BC-era heartbeat version stored before the edge refused
    them) would otherwise fail every answer that reads the row.
    """
    try:
        return psycopg2.extensions.PYDATETIMETZ(value, cursor)
    except ValueError:
        return value


psycopg2.extensions.register_type(
    psycopg2.extensions.new_type(psycopg2.extensions.PYDATETIMETZ.values, "STET_TIMESTAMPTZ", _timestamptz)
)


class _CountingCursor(psycopg2.extensions.cursor):
    """Counts its statements: a failure on the first one of a reused connection may be retried."""

    statements = 0

    def execute(self, query: str, vars: Any = None) -> None:
        self.statements += 1
        return super().execute(query, vars)


def classify(error: Exception) -> ApiError:
    """The answer a client gets for a driver error.

    deadlock or serialization failure: 409, retryable (nothing was committed);
    statement_timeout: 503 DATABASE_TIMEOUT; anything else (connection refused, lost,
    server shutting down, idle-in-transaction session killed, server in read-only
    recovery): 503 DATABASE_UNAVAILABLE.
    """
    if isinstance(error, psycopg2.errors.TransactionRollbackError):
        return TransactionConflict()
    if isinstance(error, psycopg2.errors.QueryCanceled):
        return DatabaseTimeout(describe(error))
    return DatabaseUnavailable(describe(error))


def describe(error: Exception) -> str:
    """The driver error's class and first line, for the access log: the server's messages
    about the link or its state name hosts, ports and roles, never a row's values."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else 'no message'}"[:200]


class ConnectionPool:
    """A small thread-safe pool that drops every idle connection once one is found broken.

    After a database restart all pooled connections are dead; a generation counter lets
    the first failure retire all of them instead of failing one request per connection.
    """

    def __init__(self, settings: Settings) -> None:
        self._dsn = settings.database_url
        self._maxconn = settings.db_pool_max
        self._wait_seconds = settings.db_pool_wait_seconds
        self._connect_timeout = settings.db_connect_timeout_seconds
        dead_after = settings.db_keepalives_idle_seconds + (
            settings.db_keepalives_interval_seconds * settings.db_keepalives_count
        )
        self._connect_args = {
            "connect_timeout": settings.db_connect_timeout_seconds,
            "keepalives": 1,
            "keepalives_idle": settings.db_keepalives_idle_seconds,
            "keepalives_interval": settings.db_keepalives_interval_seconds,
            "keepalives_count": settings.db_keepalives_count,
            # Unacknowledged data (a query sent into a black hole) gives up as fast.
            "tcp_user_timeout": dead_after * 1000,
        }
        self._fail_fast_after = settings.db_busy_fail_fast_seconds
        self._idle: list[tuple[int, Connection]] = []
        self._busy: dict[object, float] = {}  # taken connection -> when it was taken
        self._in_use = 0
        self._generation = 0
        self._lock = threading.Lock()
        self._slot_free = threading.Condition(self._lock)
        for _ in range(settings.db_pool_min):
            try:
                self._idle.append((0, self._connect()))
            except DRIVER_ERRORS:
                break  # the database may come up later; connect lazily then

    def _connect(self) -> Connection:
        return psycopg2.connect(self._dsn, **self._connect_args)

    def acquire(self) -> tuple[Connection, bool]:
        """Return (connection, reused); reused is False for a connection opened just now.

        When every connection is taken, wait for one, at most STET_DB_POOL_WAIT_SECONDS;
        but once every taken connection has been busy for STET_DB_BUSY_FAIL_FAST_SECONDS
        (the database stopped answering), refuse at once: the threads that would wait stay
        free to answer /health and to refuse the next requests quickly.
        """
        deadline = time.monotonic() + self._wait_seconds
        with self._lock:
            while not (self._idle or self._in_use < self._maxconn):
                now = time.monotonic()
                if now >= deadline:
                    raise DatabaseUnavailable(f"no pooled connection came free within {self._wait_seconds} s")
                if max(self._busy.values(), default=now) < now - self._fail_fast_after:
                    raise DatabaseUnavailable(
                        f"all {self._maxconn} pooled connections busy for over {self._fail_fast_after:g} s"
                    )
                self._slot_free.wait(min(self._fail_fast_after / 4, deadline - now))
            self._in_use += 1
            ticket = object()  # stands for the connection until there is one
            self._busy[ticket] = time.monotonic()
            while self._idle:
                generation, conn = self._idle.pop()
                if generation == self._generation and not conn.closed:
                    self._busy[conn] = self._busy.pop(ticket)
                    return conn, True
                conn.close()
        try:
            conn = self._connect()
        except DRIVER_ERRORS:
            self._return_slot(ticket)
            raise
        with self._lock:
            self._busy[conn] = self._busy.pop(ticket)
        return conn, False

    def release(self, conn: Connection) -> None:
        with self._lock:
            if not conn.closed:
                self._idle.append((self._generation, conn))
            self._busy.pop(conn, None)
            self._in_use -= 1
            self._slot_free.notify()

    def discard(self, conn: Connection) -> None:
        """Close a broken connection and retire every idle one opened before it broke."""
        conn.close()
        with self._lock:
            self._generation += 1
        self._return_slot(conn)

    def _return_slot(self, holder: object) -> None:
        with self._lock:
            self._busy.pop(holder, None)
            self._in_use -= 1
            self._slot_free.notify()

    def close(self) -> None:
        with self._lock:
            for _, conn in self._idle:
                conn.close()
            self._idle.clear()

    def run(self, work: Callable[[Cursor], T], single_statement: bool = False) -> T:
        """Run work(cursor) in one transaction and commit; driver errors become ApiErrors.

        single_statement: work issues exactly one statement, which then runs in
        autocommit, saving the BEGIN and COMMIT round trips. A reused connection that broke
        at once, on its first statement (a stale one, after a database restart), is retried
        once on a fresh connection: nothing was committed. One that broke later or after
        waiting is not: the server is unreachable or killed the session, and a second try
        would only double the client's wait.
        """
        for attempt in (1, 2):
            try:
                conn, reused = self.acquire()
            except DRIVER_ERRORS as error:
                raise DatabaseUnavailable(describe(error)) from None
            started = time.monotonic()
            cursor = conn.cursor(cursor_factory=_CountingCursor)
            try:
                conn.autocommit = single_statement
                result = work(cursor)
                cursor.close()
                conn.commit()
            except DRIVER_ERRORS as error:
                broken = self._settle(conn)
                failed_at_once = cursor.statements <= 1 and time.monotonic() - started < self._connect_timeout
                if broken and reused and failed_at_once and attempt == 1:
                    continue
                raise classify(error) from None
            except BaseException:
                self._settle(conn)
                raise
            self.release(conn)
            return result
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _settle(self, conn: Connection) -> bool:
        """After a failure: roll back and pool the connection, or discard it; True if broken."""
        if not conn.closed:
            try:
                conn.rollback()
            except DRIVER_ERRORS:
                pass
            else:
                self.release(conn)
                return False
        self.discard(conn)
        return True
