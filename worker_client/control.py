"""The control function ``__ctl__.NAME``: shutdown, inspect, cancel and reload, asked by
`runadmin` on a connection of its own, so it reaches a worker whose job threads are all
busy. With a key configured, only a signed control job is obeyed."""
from __future__ import annotations

import logging
import os
import signal
import time
from _blake2 import blake2b  # not hashlib: that loads OpenSSL (3.7 MiB)

from gearman_frame import __version__
from gearman_frame.envelope import dumps, parse_request
from gearman_frame.errors import EnvelopeError
from gearman_frame.queues import CONTROL_CANCEL, CONTROL_INSPECT, CONTROL_RELOAD, CONTROL_SHUTDOWN
from gearman_frame.wire import JobFailed

from .outgoing import HOST
from .stats import resident_mib
from .supervisor import tell_supervisor

log = logging.getLogger(__name__)


class Control:
    """Answers the control jobs of one worker process (``pool``, its WorkerPool)."""

    def __init__(self, pool):
        self.pool = pool
        self._config_hash: str | None = None

    def __call__(self, wire_worker, job):
        """A control job: ``shutdown``, raw or as the first arg of an envelope; with a key
        configured, only a signed envelope (anything else is a log line and a refusal)."""
        command = self._control_command(job)
        if command is None:
            return JobFailed(b"refused: unauthenticated job")
        if command == CONTROL_SHUTDOWN:
            if self.pool.supervised:  # the supervisor stops every process, this one included
                log.info("worker %s: shutdown job %s via %s: passed to the supervisor",
                         self.pool.name, job.unique, job.function)
                tell_supervisor(signal.SIGTERM)
            else:
                self.pool.request_stop(f"shutdown job {job.unique} via {job.function}")
            return b"ok: stopping"
        if command == CONTROL_INSPECT:
            return dumps(self.inspect())
        verb, _, argument = command.partition(b" ")
        if verb == CONTROL_CANCEL and argument.strip():
            return self.pool.cancel(argument.strip().decode("utf-8", "replace"))
        if command == CONTROL_RELOAD and self.pool.supervised:
            log.info("worker %s: reload job %s via %s: passed to the supervisor", self.pool.name,
                     job.unique, job.function)
            tell_supervisor(signal.SIGHUP)
            return b"ok: reloading"
        return JobFailed(b"unknown control command: " + command[:100])

    def _control_command(self, job):
        data = bytes(job.data)
        try:
            request, _raw = parse_request(data)
        except EnvelopeError:
            request = None
        gate = self.pool.context.gate
        why = gate.why_refused(job.function, request, data) if gate is not None else None
        if why is not None:
            log.warning("control job %s refused: %s", job.unique, why)
            return None
        if request is None:
            return data.strip()
        first = request.args[0] if request.args else ""
        return (first if isinstance(first, bytes) else str(first).encode()).strip()

    def inspect(self):
        """This process's live state: what `runadmin inspect` shows."""
        counters, durations = self.pool.stats.snapshot()
        return {"worker": self.pool.fleet_name, "process": self.pool.name, "pid": os.getpid(),
                "host": HOST, "version": __version__, "config_hash": self.config_hash,
                "uptime_s": round(time.monotonic() - self.pool.started, 1),
                "rss_mib": round(resident_mib(), 1), "threads": self.pool.thread_count,
                "recycling": self.pool.recycling, "running": self.pool.stats.running(),
                "counters": counters, "durations_s": durations,
                "slots": self.pool.caps.held_now() if self.pool.caps is not None else {}}

    @property
    def config_hash(self):
        """16 hex characters of a hash of the config file's bytes (which config runs)."""
        if self._config_hash is None:
            try:
                with open(self.pool.config.path, "rb") as handle:
                    data = handle.read()
            except (OSError, TypeError):
                data = b""
            self._config_hash = blake2b(data, digest_size=8).hexdigest()
        return self._config_hash
