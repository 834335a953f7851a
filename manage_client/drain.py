"""Clearing a queue without losing what it held, and sending a dump back.

gearmand's ``drop function`` orphans queued jobs and ``cancel job`` only marks them, so a
clear drains instead: it registers as a worker for the function, takes each job, writes it
to the dump (one JSON line, flushed to disk) *before* answering it, answers its sender with
a failed result saying it was cleared, and stops when status shows nothing queued.
``resend`` submits a dump's jobs again (background, same unique keys and priority), except
foreground jobs, whose senders were already told they were cleared (``--all`` includes
them); a dump of a dead-letter queue sends the original jobs to their original functions.
"""
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field

from gearman_frame.envelope import STATUS_ERROR, Result, dumps, loads, parse_request
from gearman_frame.errors import EnvelopeError, UsageError
from gearman_frame.queues import DEAD_PREFIX, read_dead_letter
from gearman_frame.wire import JobFailed, WireWorker

from .admin import AdminClient

log = logging.getLogger(__name__)

#: Seconds between two status checks while draining.
CHECK_INTERVAL = 0.1
PRIORITY_ORDER = ("high", "normal", "low")


@dataclass
class DrainReport:
    function: str
    removed: int = 0
    by_priority: dict = field(default_factory=dict)
    live_workers: int = 0


class Drainer:
    """Drains one function's queued jobs on every server into a dump file."""

    def __init__(self, servers, function, dump_path, client_id=None):
        self.servers = servers
        self.function = function
        self.dump_path = dump_path
        self.client_id = client_id or f"runadmin-clear.{os.getpid()}"
        self.report = DrainReport(function)
        self._prio_admin = AdminClient(servers)
        self._snapshot = {}
        self._dump = None

    def run(self, timeout=600.0, on_warning=None):
        """Drain until nothing is queued (or ``timeout``); return a DrainReport."""
        with AdminClient(self.servers) as admin:
            live = sum(r.workers for r in admin.status() if r.function == self.function)
            self.report.live_workers = live
            if live and on_warning:
                on_warning(f"{live} live worker(s) of {self.function} may take some of its "
                           "jobs while the queue drains")
            self._refresh_priorities()
            worker = WireWorker(self.servers, client_id=self.client_id)
            worker.register_task(self.function, self._take)
            with open(self.dump_path, "ab") as self._dump:
                thread = threading.Thread(target=worker.work, name=self.client_id, daemon=True)
                thread.start()
                try:
                    self._wait_until_empty(admin, worker, timeout)
                finally:
                    worker.stop()
                    thread.join(10)
        self._prio_admin.close()
        return self.report

    def _wait_until_empty(self, admin, worker, timeout):
        deadline, empty_checks = time.monotonic() + timeout, 0
        while time.monotonic() < deadline:
            time.sleep(CHECK_INTERVAL)
            queued = sum(r.queued for r in admin.status() if r.function == self.function)
            empty_checks = empty_checks + 1 if queued == 0 and not worker.busy else 0
            if empty_checks >= 2:  # twice, so a job in the middle of its hand-over counts
                return
        log.warning("clear %s: stopped after %ss with jobs still queued", self.function, timeout)

    def _refresh_priorities(self):
        self._snapshot = {r.server: r for r in self._prio_admin.prioritystatus()
                          if r.function == self.function}

    def _priority(self, server):
        """The level gearmand hands out first: the highest with jobs in the last snapshot."""
        row = self._snapshot.get(server)
        for level in PRIORITY_ORDER:
            if row is not None and getattr(row, level) > 0:
                return level
        return "normal"

    def _take(self, wire_worker, job):
        server = str(job.connection.address)
        priority = self._priority(server)
        line = dumps({"function": job.task, "unique": job.unique, "priority": priority,
                      "background": _background(job.data), "data": bytes(job.data),
                      "server": server, "cleared_at": time.time()})
        self._dump.write(line + b"\n")
        self._dump.flush()
        os.fsync(self._dump.fileno())
        self.report.removed += 1
        self.report.by_priority[priority] = self.report.by_priority.get(priority, 0) + 1
        self._refresh_priorities()
        return JobFailed(Result(status=STATUS_ERROR, id=job.unique,
                                error=f"cleared by admin into {self.dump_path}").encode())


def _background(data):
    """True/False for our envelopes (they say so); None for raw payloads (unknown)."""
    try:
        request, _raw = parse_request(bytes(data))
    except EnvelopeError:
        return None
    return None if request is None else request.background


def read_dump(path):
    """The jobs of a dump file as dicts (function, unique, priority, data, background); a
    dead letter becomes its original job. A bad file or line is a UsageError naming it."""
    try:
        with open(path, "rb") as handle:
            lines = handle.read().splitlines()
    except OSError as err:
        raise UsageError(f"cannot read dump file {path}: {err.strerror}") from err
    jobs = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = loads(line)
            if record["function"].startswith(DEAD_PREFIX):
                dead = read_dead_letter(record["data"])
                record = {"function": dead["function"], "unique": dead["unique"],
                          "data": dead["data"], "priority": "normal", "background": True}
            data = record["data"]
            jobs.append({"function": record["function"], "unique": record["unique"],
                         "data": data.encode("utf-8") if isinstance(data, str) else bytes(data),
                         "priority": record.get("priority") or "normal",
                         "background": record.get("background")})
        except (EnvelopeError, KeyError, TypeError, AttributeError, json.JSONDecodeError) as err:
            raise UsageError(f"{path}:{number}: expected a dump line with function, unique "
                             f"and data, got {line[:80]!r}") from err
    return jobs
