"""Collecting a result channel: take what waits on ``__results__.CHANNEL`` into the store.

A collector is a worker of that one function: each published result is written to the
store (committed) before it is answered, so gearmand forgets it only once it is kept; a
collector that dies first leaves it queued for the next. Results signed with a key the
sender does not accept (or unsigned, when it has a key) are logged and dropped. A
collection ends when every server has answered "no job" since the last result (or at
its deadline); ``follow`` keeps collecting until stopped.
"""
from __future__ import annotations

import logging
import os
import threading
import time

from gearman_frame.envelope import loads
from gearman_frame.errors import EnvelopeError
from gearman_frame.queues import results_function
from gearman_frame.wire import WireWorker

log = logging.getLogger(__name__)


class Collector:
    """Collects one channel into a ResultStore; ``on_result(Stored)`` for each."""

    def __init__(self, servers, channel, store, keyring=None, on_result=None):
        self.function = results_function(channel)
        self.store, self.keyring, self.on_result = store, keyring, on_result
        self.servers = servers
        self.collected = 0
        self.stop_event = threading.Event()

    def _take(self, wire_worker, job):
        payload = bytes(job.data)
        if self.keyring is not None and not self._trusted(payload):
            return b"dropped"
        try:
            stored = self.store.add(payload, job.unique)
        except EnvelopeError as err:
            log.warning("%s: dropped a message that is not a result (%s)", self.function, err)
            return b"dropped"
        if stored is None:  # a start notice: counted, not a result
            return b"kept"
        self.collected += 1
        if self.on_result is not None:
            self.on_result(stored)
        return b"kept"

    def _trusted(self, payload):
        try:
            record = loads(payload)
        except EnvelopeError:
            record = None
        why = (self.keyring.check(self.function, payload, record, fresh=False)
               if isinstance(record, dict) else "not JSON")
        if why is not None:
            log.warning("%s: dropped a result that is not signed by an accepted key (%s)",
                        self.function, why)
        return why is None

    def run(self, deadline: float | None = None, follow: bool = False) -> int:
        """Collect until drained (or ``deadline``, a monotonic time; or, with ``follow``,
        until stop()); return how many results were kept."""
        worker = WireWorker(self.servers, client_id=f"sendjob-results.{os.getpid()}",
                            watch_idle=True)
        worker.register_task(self.function, self._take)
        thread = threading.Thread(target=worker.work, name="collector", daemon=True)
        thread.start()
        try:
            while not self.stop_event.wait(0.01):
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if not follow and worker.drained():
                    break
        finally:
            worker.stop()
            thread.join(10)
        return self.collected

    def stop(self):
        self.stop_event.set()
