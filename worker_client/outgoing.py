"""What a worker sends besides its answers: results to their channels, start notices,
dead letters and requeued jobs. Each goes on the job's own connection or through a
client of this process's; what no server takes is kept in a spool (owner-only files)
until one does, and is never dropped."""
from __future__ import annotations

import logging
import os
import socket
import threading
import time

from gearman_frame.envelope import dumps
from gearman_frame.queues import (dead_letter_function, dead_letter_record, requeued_unique,
                                  requeues_of, result_record, results_function)
from gearman_frame.delays import epoch_of
from gearman_frame.wire import Submit, WireClient, submit_on

from .deadletters import DeadLetterSpool, requeue_payload
from .stats import Stats

log = logging.getLogger(__name__)

HOST = socket.gethostname()
#: What became of a dead letter, a result or a next step kept in a spool (else: the
#: server that queued it).
KEPT = "kept"


class Outgoing:
    """The sending side of one worker process (its methods are called from job threads)."""

    def __init__(self, config, name: str, stats: Stats, dead_letters: DeadLetterSpool | None,
                 results: DeadLetterSpool | None):
        self.config, self.servers, self.name, self.stats = config, config.servers, name, stats
        #: Spools for dead letters and for results no server took.
        self.dead_letters, self.results = dead_letters, results
        self._local = threading.local()

    def dead_letter(self, job, result):
        """Send a background job that failed for good to ``__dead__.FUNCTION``, or keep
        the letter in the spool when no server takes it; False only if both failed (the
        caller then leaves the job unanswered for gearmand to hand out again)."""
        spec = self.config.functions.get(job.function)
        base, requeues = requeues_of(job.unique)
        if spec is not None and requeues < spec.max_requeues:
            return self._requeue(job, spec, base, requeues + 1)
        function = dead_letter_function(job.function)
        try:
            record = dead_letter_record(job.function, job.unique, job.data, result.to_dict(),
                                        requeues)
        except ValueError as err:  # cannot happen for a result that encoded; be safe
            log.error("could not encode the dead letter: %s", err)
            return False
        outcome = self._send(function, job.unique, record, self.dead_letters, "the dead letter")
        if outcome is not None:
            self.stats.count(job.function, "dead_lettered")
        if outcome not in (None, KEPT):
            log.warning("dead-lettered to %s", function)
        return outcome is not None

    def _requeue(self, job, spec, base, count):
        """beanstalkd's kick: send a job that failed for good back to its function after
        ``requeue_after`` (held by gearmand), as requeue ``count`` (in its unique)."""
        at = time.time() + spec.requeue_after
        payload = requeue_payload(job.data, at, self.config.keyring, job.function)
        outcome = self._send(job.function, requeued_unique(base, count), payload, self.dead_letters,
                             "the requeued job", epoch=epoch_of(at))
        if outcome is not None:
            self.stats.count(job.function, "requeued")
            log.warning("failed for good: sent back to %s in %gs (requeue %d of %d)",
                        job.function, spec.requeue_after, count, spec.max_requeues)
        return outcome is not None

    def _encoded(self, function, record):
        """A record's JSON, signed for ``function`` when a key is configured."""
        keyring = self.config.keyring
        return dumps(record) if keyring is None else keyring.sign(function, record)

    def publish_result(self, job, request, result, started_at, on_job_connection=True):
        """Publish a job's final result to ``__results__.CHANNEL`` (signed when a key is
        set) on the job's connection (or, for a job whose own thread hangs, through this
        process's sender client), kept in the result spool if gearmand refuses it or the
        connection drops; False only if it cannot be encoded (the caller then leaves the
        job unanswered)."""
        function = results_function(request.reply_to)
        record = result_record(result, request, job.function, started_at, time.time())
        try:
            payload = self._encoded(function, record)
        except ValueError as err:
            log.error("could not encode the result: %s", err)
            return False
        unique = f"{request.id[:40]}.{os.urandom(4).hex()}"  # each run's result arrives
        if not on_job_connection:
            return self._send(function, unique, payload, self.results,
                              "the result") is not None

        def keep(why):
            self._keep(self.results, function, unique, payload, why, "the result")
        # on the job's own connection, just before its answer: gearmand queues the result
        # first, with no round trip; if it refuses it or the connection drops, it is kept
        submit_on(job, Submit(function, unique, payload, on_lost=keep))
        log.info("result published to %s", function)
        return True

    def notice_start(self, job, request):
        """Tell the job's channel that a command's run began (its runs are counted from
        these: a run whose worker died leaves its notice). Commands only: they are the
        long runs a worker's death can cut; a notice per no-op task would cost a quarter of
        a background task's throughput (one more job in gearmand each)."""
        function = results_function(request.reply_to)
        record = {"id": request.id, "event": "started", "worker": self.name, "host": HOST,
                  "started_at": time.time()}
        unique = f"{request.id[:40]}.s{os.urandom(4).hex()}"
        submit_on(job, Submit(function, unique, self._encoded(function, record),
                              on_lost=lambda why: log.info("start notice lost: %s", why)),
                  now=True)

    def send_step(self, function, request):
        """Queue a workflow's next step (signed when a key is set), or keep it in the
        spool; ``(the server that took it, or KEPT, or None if neither, its payload)``."""
        try:
            payload = request.encode(self.config.keyring, function)
        except ValueError as err:
            log.error("could not encode the workflow's next step: %s", err)
            return None, b""
        return self._send(function, request.id, payload, self.dead_letters,
                          "the workflow's next step"), payload

    def _client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = WireClient(self.servers)
        return client

    def _send(self, function, unique, record, spool, what, epoch=None):
        """Queue ``record`` on ``function`` (held until ``epoch`` if given): the server
        that took it; or keep it in ``spool`` to be sent once a server takes it (KEPT);
        None if neither could be done."""
        try:
            return str(self._client().submit(function, record, unique=unique,
                                             background=True, timeout=10,
                                             epoch=epoch).server)
        except Exception as err:  # refused (queue full), no server, EMFILE ...
            return self._keep(spool, function, unique, record, err, what, epoch)

    def _keep(self, spool, function, unique, record, why, what, epoch=None):
        if spool is None:
            log.error("could not send %s (%s) and no spool is configured", what, why)
            return None
        try:
            path = spool.keep(function, unique, record, epoch)
        except OSError as err:
            log.error("could not send %s (%s) nor spool it (%s)", what, why, err)
            return None
        log.warning("no server took %s (%s); kept in %s until one does", what, why, path)
        return KEPT
