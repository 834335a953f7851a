"""The result store: every result this host's senders received, looked up by job id.

A SQLite file (owner-only: results hold outputs). A job id has one record; a second
result for it (the job ran again after a worker died) replaces the first and counts a
run. Records older than ``client.result_ttl`` are pruned as new ones arrive. In the core
because two roles use it: senders write and look up results, the dashboard reads them.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from contextlib import closing
from dataclasses import dataclass
from typing import Any, Callable

from ..envelope import Result, dumps, loads
from ..errors import EnvelopeError, ResultStoreError
from ..files import ensure_private_file
from .store_schema import RUNS as _RUNS, SCHEMA

log = logging.getLogger(__name__)

BUSY_TIMEOUT = 5.0
#: A prune runs once per this many records added.
PRUNE_EVERY = 500
FAILED_STATUSES = ("failed", "timeout", "error", "refused", "cancelled")


@dataclass(frozen=True)
class Stored:
    """One record: the published result object, and how many results arrived for it."""

    id: str
    function: str | None
    status: str
    runs: int
    received: float
    record: dict

    @property
    def result(self) -> Result:
        return Result.decode(dumps(self.record))  # bytes (binary output) included

    def to_dict(self) -> dict:
        return {**self.record, "runs": self.runs, "received": self.received}


class ResultStore:
    """The SQLite file of results (see the module docstring)."""

    def __init__(self, path: str, ttl: float) -> None:
        self.path = path
        self.ttl = ttl
        self._lock = threading.Lock()
        self._added = 0

    def add(self, payload: bytes, unique: str | None = None) -> Stored | None:
        """Record one published result (its JSON bytes, and the unique key it was
        published with: the same publication handed over twice counts one run), or a
        start notice (None); EnvelopeError if it is neither."""
        record = loads(payload)
        now = time.time()
        if isinstance(record, dict) and record.get("event") == "started" \
                and isinstance(record.get("id"), str):
            self._run(lambda conn: conn.execute(
                "INSERT OR IGNORE INTO starts (notice, id, received) VALUES (?, ?, ?)",
                (unique or os.urandom(8).hex(), record["id"], now)))
            return None
        if not isinstance(record, dict) or not isinstance(record.get("id"), str) \
                or not isinstance(record.get("status"), str):
            raise EnvelopeError("not a result record (needs an 'id' and a 'status')")
        function = record.get("function") if isinstance(record.get("function"), str) else None
        ended = record.get("ended_at") if isinstance(record.get("ended_at"), (int, float)) \
            else None

        def write(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute(
                    "INSERT INTO results (id, function, status, runs, received, ended, "
                    "last_unique, record) VALUES (?, ?, ?, 1, ?, ?, ?, ?) ON CONFLICT(id) DO "
                    "UPDATE SET function = excluded.function, status = excluded.status, "
                    "runs = runs + (results.last_unique IS NOT excluded.last_unique), "
                    "received = excluded.received, ended = excluded.ended, "
                    "last_unique = excluded.last_unique, record = excluded.record",
                    (record["id"], function, record["status"], now, ended, unique,
                     bytes(payload)))
                self._added += 1
                if self._added % PRUNE_EVERY == 0:
                    conn.execute("DELETE FROM results WHERE received < ?", (now - self.ttl,))
                    conn.execute("DELETE FROM starts WHERE received < ?", (now - self.ttl,))
                return conn.execute(f"SELECT {_RUNS} FROM results WHERE id = ?",
                                    (record["id"],)).fetchone()[0]
        runs = self._run(write)
        return Stored(record["id"], function, record["status"], runs, now, record)

    def get(self, job_id: str) -> Stored | None:
        rows = self._select("WHERE id = ?", (job_id,), 1)
        return rows[0] if rows else None

    def find(self, function: str | None = None, failed: bool = False,
             since: float | None = None, limit: int = 1000) -> list[Stored]:
        """Records, newest first, filtered by function, failure, and time received."""
        where: list[str] = []
        params: list[object] = []
        if function:
            where.append("function = ?")
            params.append(function)
        if failed:
            where.append(f"status IN ({', '.join('?' * len(FAILED_STATUSES))})")
            params += FAILED_STATUSES
        if since is not None:
            where.append("received >= ?")
            params.append(since)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        return self._select(clause + " ORDER BY received DESC", tuple(params), limit)

    def _select(self, clause: str, params: tuple, limit: int) -> list[Stored]:
        if not os.path.exists(self.path):
            return []
        rows = self._run(lambda conn: conn.execute(
            f"SELECT id, function, status, {_RUNS}, received, record FROM results {clause} "
            "LIMIT ?", (*params, limit)).fetchall())
        return [Stored(i, f, s, r, t, _record(rec)) for i, f, s, r, t, rec in rows]

    def _run(self, action: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._lock:
            try:
                with closing(self._connect()) as conn:
                    return action(conn)
            except sqlite3.DatabaseError as err:
                raise ResultStoreError(self.path, str(err), "check the file, or set "
                                       "client.result_store") from err

    def _connect(self) -> sqlite3.Connection:
        try:
            ensure_private_file(self.path)
        except OSError as err:
            raise ResultStoreError(self.path, f"cannot create it ({err.strerror})",
                                   "make its folder writable or set client.result_store") \
                from err
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            for statement in SCHEMA:
                conn.execute(statement)
        except BaseException:
            conn.close()
            raise
        return conn


def _record(blob: bytes) -> dict:
    """A stored result record (a JSON object; anything else is wrapped, never dropped)."""
    record = loads(bytes(blob))
    return record if isinstance(record, dict) else {"value": record}
