"""Clearing a queue without losing what it held, and sending a dump back.

gearmand's ``drop function`` orphans queued jobs and ``cancel job`` only marks them, so a
clear drains instead: it registers as a worker for the function, takes each job, writes it
to the dump (one JSON line, written whole and synced) *before* answering it, answers its
sender with a failed result saying it was cleared, and stops when status shows nothing
queued. If the dump cannot be written (a full disk, an I/O error), the line is cut back
off the file, the job in hand is left unanswered (gearmand keeps it) and the drain stops:
every job is then either a whole line in the dump or still queued.
``resend`` submits a dump's jobs again (background, same unique keys and priority), except
foreground jobs, whose senders were already told they were cleared (``--all`` includes
them); a dump of a dead-letter queue sends the original jobs to their original functions.
A bad line is named with its number and left out (``--strict``: nothing is sent).
"""
from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field

from gearman_frame.sending.dispatch import Dispatcher, Job
from gearman_frame.envelope import STATUS_ERROR, Request, Result, dumps, loads, parse_request
from gearman_frame.errors import (AdminUnsupported, BadRequest, EnvelopeError, FrameError,
                                  ServerRefused, UsageError, WireError)
from gearman_frame.files import open_private
from .limits import MAX_PAYLOAD_BYTES
from gearman_frame.queues import DEAD_PREFIX, read_dead_letter, requeues_of
from gearman_frame.files import write_private_file
from gearman_frame.queues import control_function
from gearman_frame.wire import (JOB_COMPLETE, PRIORITIES, AbandonJob, JobFailed, WireClient,
                                WireWorker, check_request)

from .admin import AdminClient

log = logging.getLogger(__name__)

#: Seconds between two status checks while draining.
CHECK_INTERVAL = 0.1
PRIORITY_ORDER = ("high", "normal", "low")


#: Longest dump line read back: a payload at its limit, base64-encoded, with room to spare.
MAX_DUMP_LINE = 2 * MAX_PAYLOAD_BYTES


@dataclass
class DrainReport:
    function: str
    removed: int = 0
    by_priority: dict = field(default_factory=dict)
    #: Why the drain stopped early (the dump could not be written), or None.
    failure: OSError | None = None


class DumpFile:
    """The dump, opened for appending (owner-only): each record is written whole and
    synced, or cut back off the file if that fails."""

    def __init__(self, path):
        try:
            self.fd = open_private(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        except OSError as err:
            raise UsageError(f"--dump {path}: cannot open it for writing: "
                             f"{err.strerror}") from err

    def append(self, record):
        """Write ``record`` and sync it; on any OSError truncate back and raise it."""
        size = os.fstat(self.fd).st_size
        try:
            view = memoryview(record)
            while view:
                view = view[os.write(self.fd, view):]
            os.fsync(self.fd)
        except OSError:
            try:
                os.ftruncate(self.fd, size)
            except OSError:  # the reader skips a line cut short; nothing else to do
                pass
            raise

    def close(self):
        os.close(self.fd)


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
        self._dump: DumpFile | None = None

    def run(self, timeout=600.0, on_warning=None):
        """Drain until nothing is queued (or ``timeout``, or a dump write fails); return a
        DrainReport."""
        self._dump = DumpFile(self.dump_path)
        try:
            with AdminClient(self.servers) as admin:
                live = sum(r.workers for r in admin.status() if r.function == self.function)
                if live and on_warning:
                    on_warning(f"{live} live worker(s) of {self.function} may take some of "
                               "its jobs while the queue drains")
                self._refresh_priorities()
                self._worker = WireWorker(self.servers, client_id=self.client_id)
                self._worker.register_task(self.function, self._take)
                thread = threading.Thread(target=self._worker.work, name=self.client_id,
                                          daemon=True)
                thread.start()
                try:
                    self._wait_until_empty(admin, self._worker, timeout)
                finally:
                    self._worker.stop()
                    thread.join(10)
        finally:
            self._dump.close()
            self._prio_admin.close()
        return self.report

    def _wait_until_empty(self, admin, worker, timeout):
        deadline, empty_checks = time.monotonic() + timeout, 0
        while time.monotonic() < deadline:
            time.sleep(CHECK_INTERVAL)
            if self.report.failure is not None:
                return
            queued = sum(r.queued for r in admin.status() if r.function == self.function)
            empty_checks = empty_checks + 1 if queued == 0 and not worker.busy else 0
            if empty_checks >= 2:  # twice, so a job in the middle of its hand-over counts
                return
        log.warning("clear %s: stopped after %ss with jobs still queued", self.function, timeout)

    def _refresh_priorities(self):
        """What each server queues at which priority; a server without prioritystatus
        (the Perl job server has one priority for background jobs) dumps as 'normal'."""
        try:
            rows = self._prio_admin.prioritystatus()
        except AdminUnsupported:
            rows = []
        except WireError as err:  # a server gone: the last snapshot stands; the drain's
            log.warning("clear %s: priorities not refreshed: %s", self.function, err)
            return                # own check of the queue sees the server gone and stops
        self._snapshot = {r.server: r for r in rows if r.function == self.function}

    def _priority(self, server):
        """The level gearmand hands out first: the highest with jobs in the last snapshot."""
        row = self._snapshot.get(server)
        for level in PRIORITY_ORDER:
            if row is not None and getattr(row, level) > 0:
                return level
        return "normal"

    def _take(self, wire_worker, job):
        if self.report.failure is not None:  # handed over before the stop took effect
            raise AbandonJob("the drain stopped: the dump could not be written")
        server = str(job.server)
        priority = self._priority(server)
        background, envelope_id = _described(job.data)
        # no unique when grabbed with GRAB_JOB (a server without GRAB_JOB_UNIQ)
        unique = job.unique or envelope_id or uuid.uuid4().hex
        line = dump_line(job.function, unique, priority, background, bytes(job.data),
                         server=server, cleared_at=time.time())
        try:
            if self._dump is None:
                raise OSError("the dump file is not open")
            self._dump.append(line)
        except OSError as err:
            self.report.failure = err
            wire_worker.stop()
            log.error("clear %s: cannot write the dump %s (%s); job %s left queued, "
                      "stopping", self.function, self.dump_path, err.strerror, unique)
            raise AbandonJob(f"the dump could not be written: {err.strerror}") from err
        self.report.removed += 1
        self.report.by_priority[priority] = self.report.by_priority.get(priority, 0) + 1
        self._refresh_priorities()
        return JobFailed(Result(status=STATUS_ERROR, id=unique,
                                error=f"cleared by admin into {self.dump_path}").encode())


def dump_line(function, unique, priority, background, data, **extra):
    """One job as a line of a dump file (what read_dump reads back)."""
    return dumps({"function": function, "unique": unique, "priority": priority,
                  "background": background, "data": data, **extra}) + b"\n"


def _described(data):
    """(background, id) of our envelopes: background True/False as they say, and their
    id; (None, None) for raw payloads (unknown)."""
    try:
        request, _raw = parse_request(bytes(data))
    except EnvelopeError:
        return None, None
    return (None, None) if request is None else (request.background, request.id)


@dataclass
class BadLine:
    """A dump line that cannot be resent, and why."""

    number: int
    reason: str


def read_dump(path, keyring=None):
    """The jobs of a dump file as dicts (function, unique, priority, data, background),
    and the bad lines as BadLine; a dead letter becomes its original job. An unreadable
    file is a UsageError. With a Keyring, an envelope not signed by an accepted key (at
    any age: resending signs it anew) is a bad line: a job someone queued without the
    key must not come back signed by the admin."""
    jobs, bad = [], []
    try:
        with open(path, "rb") as handle:
            for number, line in _bounded_lines(handle):
                if line is None:
                    bad.append(BadLine(number, f"longer than {MAX_DUMP_LINE} bytes"))
                    continue
                if not line.strip():
                    continue
                try:
                    job = _dumped_job(line)
                    if keyring is not None:
                        _check_signed(job, keyring)
                    jobs.append(job)
                except _BadRecord as why:
                    bad.append(BadLine(number, str(why)))
    except OSError as err:
        raise UsageError(f"cannot read dump file {path}: {err.strerror}") from err
    return jobs, bad


def _bounded_lines(handle):
    """``(number, line)`` for each line; ``line`` is None for one over MAX_DUMP_LINE
    (read past in chunks, never held whole)."""
    number = 0
    while True:
        line = handle.readline(MAX_DUMP_LINE + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_DUMP_LINE:
            while line and not line.endswith(b"\n"):
                line = handle.readline(1 << 20)
            yield number, None
            continue
        yield number, line


def _check_signed(job, keyring):
    envelope = keyring.envelope_object(job["data"])
    if envelope is None:
        return  # raw: resent as it came (only with --all), to a function that allows it
    why = keyring.check(job["function"], job["data"], envelope, fresh=False)
    if why is not None:
        raise _BadRecord(f"not signed by an accepted key ({why})")


class _BadRecord(Exception):
    """Raised for a dump line that is not a job this version can resend."""


def _dumped_job(line):
    try:
        record = loads(line)
        if not isinstance(record, dict):
            raise _BadRecord("expected a JSON object")
        function, unique = record.get("function"), record.get("unique")
        if isinstance(function, str) and function.startswith(DEAD_PREFIX):
            dead = read_dead_letter(record.get("data"))
            # a person resends it: its requeue count starts again
            function, unique = dead["function"], requeues_of(dead["unique"])[0]
            record = {"data": dead["data"], "priority": "normal", "background": True}
        data, priority = record.get("data"), record.get("priority") or "normal"
        if not isinstance(function, str) or not isinstance(unique, str):
            raise _BadRecord("expected a function and a unique (strings)")
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, bytes):
            raise _BadRecord("expected data (a string or base64 bytes)")
        if len(data) > MAX_PAYLOAD_BYTES:
            raise _BadRecord(f"data of {len(data)} bytes is over the {MAX_PAYLOAD_BYTES}-byte "
                             "job limit")
        if priority not in PRIORITIES:
            raise _BadRecord(f"priority {priority!r} is not one of {', '.join(PRIORITIES)}")
        if record.get("background") not in (True, False, None):
            raise _BadRecord("background must be true, false or null")
        check_request(function, unique)
    except (EnvelopeError, BadRequest, TypeError, AttributeError, ValueError) as err:
        raise _BadRecord(f"expected a dump line with function, unique and data: {err}") \
            from err
    return {"function": function, "unique": unique, "data": data, "priority": priority,
            "background": record.get("background")}


@dataclass
class ResendReport:
    """What became of resent jobs: how many were queued, and the ones that were not."""

    queued: int = 0
    unsent: list = field(default_factory=list)  # (job dict, why)
    unsent_path: str | None = None

    def reasons(self):
        counts: dict[str, int] = {}
        for _job, why in self.unsent:
            counts[why] = counts.get(why, 0) + 1
        return "; ".join(f"{n} x {why}" for why, n in counts.items())


def resend_jobs(config, jobs, unsent_path):
    """Submit dumped jobs again (background, same unique keys and priority), many in
    flight, through the core's dispatcher (their outcomes in the job ledger are forgotten
    first: sent again on purpose, they run again); the ones no server queued are written, as dump
    lines, to ``unsent_path`` (owner-only), so nothing is lost."""
    report = ResendReport(unsent_path=unsent_path)
    if config.store.url is not None:  # sent again on purpose: they run again
        from gearman_frame.ledger import open_ledger  # only with a ledger
        store = config.store
        ledger = open_ledger(store.url, store.lease, store.dedup_ttl, store.result_ttl, 1)
        try:
            ledger.reopen([j["unique"] for j in jobs])
        finally:
            ledger.close()
    dispatcher = Dispatcher(config.servers, config.client.timeout, config.client.resend,
                            signer=config.keyring)
    try:
        outgoing = [Job(j["function"], data=j["data"], id=j["unique"],
                        priority=j["priority"], background=True) for j in jobs]

        def done(index, outcome):
            if outcome.error is None:
                report.queued += 1
            else:
                why = (f"refused: {outcome.error.text}"
                       if isinstance(outcome.error, ServerRefused) else "no server took it")
                report.unsent.append((jobs[index], why))
        dispatcher.run(outgoing, done)
    finally:
        dispatcher.close()
    if report.unsent:
        write_private_file(unsent_path, b"".join(
            dump_line(j["function"], j["unique"], j["priority"], j["background"], j["data"])
            for j, _why in report.unsent))
    return report


#: Seconds a control job (shutdown) may wait for its worker's answer.
CONTROL_TIMEOUT = 10.0


def send_control(servers, worker_name, command, keyring=None, timeout=None):
    """Send ``command`` to worker ``worker_name``'s control function (high priority, in
    the foreground) and return its answer; FrameError if none came. With a Keyring the
    command goes as the first arg of a signed envelope."""
    function = control_function(worker_name)
    payload = (command if keyring is None else
               Request(args=(command.decode(),)).encode(keyring, function))
    client = WireClient(servers)
    try:
        request = client.submit(function, payload, priority="high",
                                timeout=timeout or CONTROL_TIMEOUT)
    finally:
        client.close()
    if request.state != JOB_COMPLETE:
        why = b"".join(bytes(d) for d in request.data_updates).decode("utf-8", "replace")
        raise FrameError(f"worker {worker_name} did not accept '{command.decode()}' "
                         f"({why.strip() or f'gearmand says {request.state}'})")
    return request.result
