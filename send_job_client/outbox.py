"""The outbox: background jobs no server accepted wait here, on disk, until delivered.

A job is written before its sender gives up on it and deleted only after gearmand
answered JOB_CREATED, so nothing is lost. If a sender dies in the moment between
JOB_CREATED and the delete, the next flush sends the job again with the same unique key,
which gearmand coalesces while the first copy is still queued.
"""
import os
import threading
import time
from contextlib import closing

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    function TEXT NOT NULL,
    data BLOB NOT NULL,
    priority TEXT NOT NULL,
    created REAL NOT NULL,
    last_error TEXT
)"""


class Outbox:
    """A SQLite file of pending background jobs, oldest first."""

    def __init__(self, path):
        self.path = path
        self._lock = threading.Lock()

    def _connect(self):
        import sqlite3  # only senders that keep jobs need it; workers import plugins too
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(SCHEMA)
        return conn

    def put(self, job, error=None):
        """Keep a job (a dispatch.Job) for later delivery; a job already kept stays once."""
        with self._lock, closing(self._connect()) as conn:
            conn.execute("INSERT OR IGNORE INTO outbox (id, function, data, priority, created, "
                         "last_error) VALUES (?, ?, ?, ?, ?, ?)",
                         (job.id, job.function, job.payload(), job.priority, time.time(),
                          str(error) if error else None))

    def pending(self, limit=None):
        """Waiting jobs as (id, function, data, priority), oldest first."""
        if not os.path.exists(self.path):
            return []
        with self._lock, closing(self._connect()) as conn:
            sql = "SELECT id, function, data, priority FROM outbox ORDER BY seq"
            if limit:
                sql += f" LIMIT {int(limit)}"
            return [(i, f, bytes(d), p) for i, f, d, p in conn.execute(sql)]

    def delete(self, job_id):
        with self._lock, closing(self._connect()) as conn:
            conn.execute("DELETE FROM outbox WHERE id = ?", (job_id,))

    def note_error(self, job_id, error):
        with self._lock, closing(self._connect()) as conn:
            conn.execute("UPDATE outbox SET last_error = ? WHERE id = ?", (str(error), job_id))

    def __len__(self):
        if not os.path.exists(self.path):
            return 0
        with self._lock, closing(self._connect()) as conn:
            return conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
