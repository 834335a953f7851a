"""The two databases a ledger lives in, behind one small interface: SQLite (WAL, one
host: the embedded default) and PostgreSQL (psycopg 3 with a connection pool: the fleet).

Statements are written once with ``?`` placeholders and ``{now}`` (the database's clock,
so the hosts of a fleet agree on when a lease runs out), ``{real}`` and ``{blob}``; each
backend fills those in. Every database error a caller can meet is LedgerUnavailable.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
from contextlib import closing, contextmanager
from operator import attrgetter
from typing import Any, Iterator, Sequence
from urllib.parse import urlsplit, urlunsplit

from ..errors import LedgerUnavailable
from ..files import ensure_private_file

#: A statement's count of rows changed.
_ROWCOUNT = attrgetter("rowcount")
#: Seconds a statement waits for a lock (SQLite).
WAIT = 5.0
#: Seconds a statement waits for a pooled connection (PostgreSQL): while the server is
#: down each try takes this long, so work resumes within about it of its return.
POOL_WAIT = 2.0


def shown(url: str) -> str:
    """``url`` without its password (for errors and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


class Backend:
    """``rows(sql, params)``, ``count(sql, params)`` (rows changed), ``script`` (a
    migration, under a lock that orders concurrent starts), ``close()``."""

    name = "?"
    where = "?"
    fragments: dict[str, str] = {}
    _sql: dict[str, str]

    def sql(self, statement: str) -> str:
        """``statement`` in this database's words (cached: a job runs two of them)."""
        done = self._sql.get(statement)
        if done is None:
            done = self._sql[statement] = self._translate(statement)
        return done

    def _translate(self, statement: str) -> str:
        return statement.format(**self.fragments)

    def rows(self, statement: str, params: Sequence[Any] = ()) -> list[tuple]:
        raise NotImplementedError

    def count(self, statement: str, params: Sequence[Any] = ()) -> int:
        raise NotImplementedError

    def many(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement for each of ``rows``, in one transaction."""
        raise NotImplementedError

    def migrate(self, apply: Any) -> None:
        """``apply(execute)`` inside one transaction that no other process runs at once."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""


class SqliteBackend(Backend):
    """One file, owner-only, WAL; one connection per ledger object, used under a lock
    (SQLite has one writer at a time anyway)."""

    name = "sqlite"
    fragments = {"now": "((julianday('now') - 2440587.5) * 86400.0)", "real": "REAL",
                 "blob": "BLOB", "greatest": "max", "skip_locked": ""}

    def __init__(self, path: str):
        self.path = self.where = path
        self._sql = {}
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                folder = os.path.dirname(self.path)
                if folder:
                    os.makedirs(folder, mode=0o700, exist_ok=True)
                ensure_private_file(self.path)
            except OSError as err:
                raise LedgerUnavailable(self.path, f"cannot create it ({err.strerror})") \
                    from err
            conn = sqlite3.connect(self.path, timeout=WAIT, isolation_level=None,
                                   check_same_thread=False)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.DatabaseError as err:
                conn.close()
                raise LedgerUnavailable(self.path, str(err)) from err
            self._conn = conn
        return self._conn

    @contextmanager
    def _cursor(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            try:
                with closing(self._connection().cursor()) as cursor:
                    yield cursor
            except sqlite3.DatabaseError as err:
                raise LedgerUnavailable(self.path, str(err)) from err

    def rows(self, statement: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self._execute(statement, params, sqlite3.Cursor.fetchall)

    def count(self, statement: str, params: Sequence[Any] = ()) -> int:
        return self._execute(statement, params, _ROWCOUNT)

    def _execute(self, statement: str, params: Sequence[Any], take: Any) -> Any:
        """One statement on the shared connection (no cursor object of its own: a job
        runs two of these), and ``take(cursor)`` while the lock is held."""
        sql = self.sql(statement)
        with self._lock:
            try:
                return take(self._connection().execute(sql, params))
            except sqlite3.DatabaseError as err:
                raise LedgerUnavailable(self.path, str(err)) from err

    def many(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._cursor() as cursor:
            cursor.execute("BEGIN IMMEDIATE")
            try:
                cursor.executemany(self.sql(statement), rows)
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")

    def migrate(self, apply: Any) -> None:
        with self._cursor() as cursor:
            cursor.execute("BEGIN IMMEDIATE")
            try:
                apply(lambda s, p=(): cursor.execute(self.sql(s), p).fetchall())
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class PostgresBackend(Backend):
    """A psycopg pool of autocommit connections, each checked before use (a restarted
    server's broken connections are replaced, not handed out)."""

    name = "postgresql"
    fragments = {"now": "extract(epoch from clock_timestamp())::float8",
                 "real": "DOUBLE PRECISION", "blob": "BYTEA", "greatest": "GREATEST",
                 "skip_locked": " FOR UPDATE SKIP LOCKED"}

    def __init__(self, url: str, size: int = 4):
        import psycopg  # imported here: a worker without a PostgreSQL store never pays it
        from psycopg_pool import ConnectionPool

        self.url, self.where = url, shown(url)
        self._sql = {}
        self._psycopg = psycopg
        # the pool says each failed reconnection; an outage is said once, by the worker
        logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
        self._errors: tuple[type[BaseException], ...] = (psycopg.Error, )
        try:
            from psycopg_pool import PoolTimeout
            self._errors += (PoolTimeout,)
        except ImportError:  # pragma: no cover - every psycopg_pool we accept has it
            pass
        # No check before each use (a round trip per statement, half a job's cost): a
        # connection a restarted server broke fails its statement, the caller tries again
        # and the pool, seeing it broken when it comes back, replaces it.
        self._pool = ConnectionPool(url, min_size=min(2, size), max_size=max(2, size),
                                    open=False, timeout=POOL_WAIT, reconnect_timeout=0,
                                    kwargs={"autocommit": True, "connect_timeout": 3,
                                            "prepare_threshold": 0})
        self._pool.open(wait=False)

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        try:
            with self._pool.connection() as conn:
                with conn.cursor() as cursor:
                    yield cursor
        except self._errors as err:
            raise LedgerUnavailable(self.where, _first_line(err)) from err

    def _translate(self, statement: str) -> str:
        return super()._translate(statement).replace("?", "%s")

    def rows(self, statement: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._cursor() as cursor:
            cursor.execute(self.sql(statement), params)
            return cursor.fetchall() if cursor.description else []

    def count(self, statement: str, params: Sequence[Any] = ()) -> int:
        with self._cursor() as cursor:
            cursor.execute(self.sql(statement), params)
            return cursor.rowcount

    def many(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._cursor() as cursor:
            with cursor.connection.transaction():
                cursor.executemany(self.sql(statement), rows)

    def migrate(self, apply: Any) -> None:
        """On a connection of its own (not the pool's): a server that cannot be reached
        is named with its own reason, not the pool's timeout."""
        try:
            with self._psycopg.connect(self.url, autocommit=True, connect_timeout=3) as conn:
                with conn.transaction(), conn.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_xact_lock(8061971)")

                    def execute(statement: str, params: Sequence[Any] = ()) -> list[tuple]:
                        cursor.execute(self.sql(statement), params)
                        return cursor.fetchall() if cursor.description else []
                    apply(execute)
        except self._errors as err:
            raise LedgerUnavailable(self.where, _first_line(err)) from err

    def close(self) -> None:
        self._pool.close()


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]
