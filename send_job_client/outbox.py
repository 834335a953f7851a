"""The outbox: background jobs no server accepted wait here, on disk, until delivered.

A job is written before its sender gives up on it and deleted only after gearmand
answered JOB_CREATED, so nothing is lost. A job whose request reached a server that never
answered (frozen, overloaded) is *in doubt*: that server may still queue it. Its row
remembers the server, and a flush first asks that server (GET_STATUS_UNIQUE) and resends
only to it, so a late JOB_CREATED does not become a second copy elsewhere.

The file is owner-only (it holds job arguments). A file SQLite cannot read is moved
aside (never deleted) and a new one started; a locked, read-only or full one raises
OutboxError naming the file and what to do.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from contextlib import closing
from dataclasses import dataclass

from gearman_frame.errors import OutboxError
from gearman_frame.files import FileLock, ensure_private_file, private_folder

log = logging.getLogger(__name__)

#: Seconds a write waits for another process's SQLite lock before giving up.
BUSY_TIMEOUT = 5.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    function TEXT NOT NULL,
    data BLOB NOT NULL,
    priority TEXT NOT NULL,
    created REAL NOT NULL,
    last_error TEXT,
    doubt TEXT,
    at REAL
)"""
_CORRUPT = ("not a database", "malformed", "file is encrypted")


@dataclass(frozen=True)
class Kept:
    """One waiting job. ``doubt``: the server that may hold it already (or None)."""

    seq: int
    id: str
    function: str
    data: bytes
    priority: str
    created: float
    doubt: str | None
    #: A delayed job's time (epoch seconds), or None.
    at: float | None = None


class Outbox:
    """A SQLite file of pending background jobs, oldest first."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()

    def flush_lock(self) -> FileLock | None:
        """The lock that makes one flusher at a time, held; None if another process holds
        it. Raises OutboxError if the lock file cannot be made (a read-only folder)."""
        lock = FileLock(f"{self.path}.lock")
        try:
            private_folder(os.path.dirname(os.path.abspath(self.path)))
            return lock if lock.acquire() else None
        except OSError as err:
            raise OutboxError(self.path, f"cannot create its lock file {lock.path} "
                              f"({err.strerror})", "make the folder writable by this user, "
                              "or set client.outbox") from err

    # -- reading and writing
    def put(self, job, error=None, doubt: str | None = None) -> None:
        """Keep a job (a dispatch.Job); a job already kept stays once, with its latest
        error and the server it is in doubt at."""
        self._write("INSERT INTO outbox (id, function, data, priority, created, last_error, "
                    "doubt, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                    "last_error = excluded.last_error, doubt = excluded.doubt",
                    (job.id, job.function, job.payload(), job.priority, time.time(),
                     str(error) if error else None, doubt, getattr(job, "at", None)),
                    recover=True)

    def batch(self, after: int = 0, limit: int = 500) -> list[Kept]:
        """Up to ``limit`` waiting jobs with ``seq > after``, oldest first."""
        if not os.path.exists(self.path):
            return []
        return [Kept(seq, i, f, bytes(d), p, c, doubt, at)
                for seq, i, f, d, p, c, doubt, at in
                self._read("SELECT seq, id, function, data, priority, created, doubt, at "
                           "FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit))]

    def delete(self, job_ids) -> None:
        job_ids = list(job_ids)
        if job_ids:
            self._write("DELETE FROM outbox WHERE id = ?", [(i,) for i in job_ids], many=True)

    def __len__(self) -> int:
        if not os.path.exists(self.path):
            return 0
        return self._read("SELECT COUNT(*) FROM outbox", ())[0][0]

    # -- SQLite, with every failure turned into OutboxError
    def _read(self, sql, params):
        with self._lock:
            return self._guard(lambda conn: conn.execute(sql, params).fetchall(), False)

    def _write(self, sql, params, many=False, recover=False):
        def run(conn):
            with conn:  # one transaction
                (conn.executemany if many else conn.execute)(sql, params)
        with self._lock:
            self._guard(run, recover)

    def _guard(self, action, recover):
        try:
            with closing(self._connect()) as conn:
                return action(conn)
        except sqlite3.DatabaseError as err:
            text = str(err)
            if not any(marker in text for marker in _CORRUPT):
                raise self._error(err) from err
            aside = self._move_aside(text)
            if not recover:
                raise OutboxError(self.path, f"unreadable ({text})",
                                  f"moved aside to {aside} (inspect it with sqlite3); a new "
                                  "outbox starts empty") from err
        try:  # a new, empty outbox in place of the corrupt one
            with closing(self._connect()) as conn:
                return action(conn)
        except sqlite3.DatabaseError as err:
            raise self._error(err) from err

    def _connect(self):
        try:
            ensure_private_file(self.path)
        except OSError as err:
            raise OutboxError(self.path, f"cannot create it ({err.strerror})",
                              "make its folder writable or set client.outbox") from err
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}
            for column, kind in (("doubt", "TEXT"), ("at", "REAL")):
                if column not in columns:  # an outbox from an earlier version
                    conn.execute(f"ALTER TABLE outbox ADD COLUMN {column} {kind}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _error(self, err):
        text = str(err)
        if "locked" in text or "busy" in text:
            advice = (f"another process holds it for more than {BUSY_TIMEOUT:g}s; find it "
                      f"with 'fuser {self.path}' and try again")
        elif "readonly" in text or "unable to open" in text or "permission" in text.lower():
            advice = "make the file and its folder writable by this user, or set client.outbox"
        elif "full" in text or _no_space_left(self.path):
            # SQLite says "disk I/O error" when its journal cannot grow: the free space tells
            text = text if "full" in text else f"{text}: its filesystem is full"
            advice = "free space on its filesystem, or set client.outbox to another one"
        else:
            advice = "check the file and its filesystem"
        return OutboxError(self.path, text, advice)

    def _move_aside(self, why):
        aside = f"{self.path}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                os.replace(self.path + suffix, aside + suffix)
        log.error("outbox %s is unreadable (%s): moved aside to %s, starting a new one",
                  self.path, why, aside)
        return aside


def _no_space_left(path: str) -> bool:
    """True when the filesystem of ``path`` has no block left for this user."""
    try:
        found = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return False
    return found.f_bavail == 0
