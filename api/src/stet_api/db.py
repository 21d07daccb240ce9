"""The connection pool: the only process-wide state of the app.

Built for PgBouncer in transaction pooling: psycopg2 interpolates parameters on the
client (no server-side prepared statements) and every unit of work is one explicit
transaction, so no session state outlives a transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from stet_api.errors import DatabaseUnavailable

T = TypeVar("T")
Cursor = psycopg2.extensions.cursor

# Errors that mean "this connection (or the server) is gone", as opposed to SQL errors.
CONNECTION_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError)

psycopg2.extras.register_uuid()


class ConnectionPool:
    """A small thread-safe pool that drops every idle connection once one is found broken.

    After a database restart all pooled connections are dead; a generation counter lets
    the first failure retire all of them instead of failing one request per connection.
    """

    def __init__(self, dsn: str, minconn: int, maxconn: int, connect_timeout: int) -> None:
        self._dsn = dsn
        self._maxconn = maxconn
        self._connect_timeout = connect_timeout
        self._idle: list[tuple[int, psycopg2.extensions.connection]] = []
        self._in_use = 0
        self._generation = 0
        self._lock = threading.Lock()
        self._slot_free = threading.Condition(self._lock)
        for _ in range(minconn):
            try:
                self._idle.append((0, self._connect()))
            except CONNECTION_ERRORS:
                break  # the database may come up later; connect lazily then

    def _connect(self) -> psycopg2.extensions.connection:
        return psycopg2.connect(self._dsn, connect_timeout=self._connect_timeout)

    def acquire(self, timeout: float = 10.0) -> tuple[psycopg2.extensions.connection, bool]:
        """Return (connection, reused); reused is False for a connection opened just now."""
        with self._lock:
            if not self._slot_free.wait_for(lambda: self._idle or self._in_use < self._maxconn, timeout):
                raise DatabaseUnavailable()
            self._in_use += 1
            while self._idle:
                generation, conn = self._idle.pop()
                if generation == self._generation and not conn.closed:
                    return conn, True
                conn.close()
        try:
            return self._connect(), False
        except CONNECTION_ERRORS:
            self._return_slot()
            raise

    def release(self, conn: psycopg2.extensions.connection) -> None:
        with self._lock:
            if not conn.closed:
                self._idle.append((self._generation, conn))
            self._in_use -= 1
            self._slot_free.notify()

    def discard(self, conn: psycopg2.extensions.connection) -> None:
        """Close a broken connection and retire every idle one opened before it broke."""
        conn.close()
        with self._lock:
            self._generation += 1
        self._return_slot()

    def _return_slot(self) -> None:
        with self._lock:
            self._in_use -= 1
            self._slot_free.notify()

    def close(self) -> None:
        with self._lock:
            for _, conn in self._idle:
                conn.close()
            self._idle.clear()

    def run(self, work: Callable[[Cursor], T], single_statement: bool = False) -> T:
        """Run work(cursor) in one transaction and commit; map a lost database to 503.

        single_statement: work issues exactly one statement, which then runs in
        autocommit (its own implicit transaction), saving the BEGIN and COMMIT round trips.
        A failure on a reused connection before COMMIT is retried once on a fresh
        connection: nothing was committed, and the connection may simply be stale.
        """
        for attempt in (1, 2):
            try:
                conn, reused = self.acquire()
            except CONNECTION_ERRORS:
                raise DatabaseUnavailable() from None
            try:
                conn.autocommit = single_statement
                with conn.cursor() as cursor:
                    result = work(cursor)
            except CONNECTION_ERRORS:
                self.discard(conn)
                if reused and attempt == 1:
                    continue
                raise DatabaseUnavailable() from None
            except BaseException:
                self._rollback_and_release(conn)
                raise
            try:
                conn.commit()
            except CONNECTION_ERRORS:
                self.discard(conn)
                raise DatabaseUnavailable() from None
            self.release(conn)
            return result
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _rollback_and_release(self, conn: psycopg2.extensions.connection) -> None:
        try:
            conn.rollback()
        except CONNECTION_ERRORS:
            self.discard(conn)
            return
        self.release(conn)
