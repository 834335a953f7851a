"""JobClient: send jobs to gearmand and get their results, never losing one.

``submit`` waits for a result (resending on timeout or lost connection, same unique key,
so gearmand runs it once); ``submit_background`` returns the job handle, or keeps the
job in the outbox when no server takes it; ``submit_many`` keeps many jobs in flight.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from python3_gearman.constants import JOB_COMPLETE, JOB_FAILED

from gearman_frame.config import load_config
from gearman_frame.envelope import STATUS_ERROR, STATUS_FAILED, STATUS_OK, Result
from gearman_frame.errors import EnvelopeError, ServerRefused, ServerUnavailable

from .dispatch import DEFAULT_WINDOW, Dispatcher, Job
from .outbox import Outbox

log = logging.getLogger(__name__)

OUTBOX = "outbox"


@dataclass
class Delivery:
    """What became of a background job: queued (``handle``), kept in the outbox, or
    refused by the server (``error``)."""

    id: str
    handle: str | None = None
    outbox: bool = False
    error: str | None = None

    @property
    def ok(self):
        return self.error is None


@dataclass
class FlushReport:
    delivered: int = 0
    remaining: int = 0


class JobClient:
    """Sends jobs to the configured servers (see the module docstring)."""

    def __init__(self, config=None, timeout=None, resend=None, outbox=None,
                 window=DEFAULT_WINDOW):
        self.config = config or load_config()
        client = self.config.client
        self.timeout = client.timeout if timeout is None else timeout
        self.outbox = outbox or Outbox(self.config.resolve(client.outbox))
        self.dispatcher = Dispatcher(self.config.servers, self.timeout,
                                     client.resend if resend is None else resend, window)

    def close(self):
        self.dispatcher.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- one job
    def submit(self, function, *args, priority="normal", timeout=None, data=None, **kwargs):
        """Run a job in the foreground and return its Result (a failed command is a Result
        with status 'failed', not an exception). Raises JobTimeout, ServerUnavailable or
        ServerRefused when no result could be had."""
        job = Job(function, args, kwargs, data=data, priority=priority)
        outcome = self._one(job, timeout)
        if outcome.error is not None:
            raise outcome.error
        return result_of(outcome)

    def submit_background(self, function, *args, priority="normal", data=None, **kwargs):
        """Queue a job; return its handle, or 'outbox' if no server took it (it waits there
        for ``flush_outbox``). Raises ServerRefused if a server refused it (queue full)."""
        job = Job(function, args, kwargs, data=data, priority=priority, background=True)
        outcome = self._one(job, None)
        if isinstance(outcome.error, ServerRefused):
            raise outcome.error
        delivery = self._deliver(job, outcome)
        return OUTBOX if delivery.outbox else delivery.handle

    def _one(self, job, timeout):
        job.validate()
        outcomes = []
        self.dispatcher.run([job], lambda _i, outcome: outcomes.append(outcome), timeout,
                            eager=True)
        return outcomes[0]

    # -- many jobs
    def submit_many(self, jobs, background=False, progress=None, on_result=None,
                    collect=True, timeout=None):
        """Send an iterable of Job objects (``background`` applies to all), many in flight.

        Returns, in the order of ``jobs``, a Result per foreground job or a Delivery per
        background job (with ``collect=False``, nothing: use ``on_result(job, outcome)``,
        which is called as each job ends, for batches too large to hold). ``progress(n)``
        is called with the count of jobs done so far.
        """
        results = {} if collect else None
        done = [0]

        def prepared():
            for job in jobs:
                job.background = background
                job.validate()
                yield job

        def finished(index, outcome):
            value = self._deliver(outcome.job, outcome) if background else result_of(outcome)
            if collect:
                results[index] = value
            done[0] += 1
            if on_result:
                on_result(outcome.job, value)
            if progress:
                progress(done[0])

        self.dispatcher.run(prepared(), finished, timeout)
        return [results[i] for i in range(len(results))] if collect else None

    def _deliver(self, job, outcome):
        if outcome.error is None:
            return Delivery(job.id, handle=outcome.request.handle)
        if isinstance(outcome.error, ServerRefused):
            return Delivery(job.id, error=str(outcome.error))
        self.outbox.put(job, outcome.error)
        log.warning("job %s on %s kept in the outbox %s: %s", job.id, job.function,
                    self.outbox.path, outcome.error)
        return Delivery(job.id, outbox=True)

    # -- outbox
    def flush_outbox(self):
        """Deliver waiting background jobs, oldest first; each is deleted only after
        gearmand queued it. Stops at the first job no server takes."""
        report = FlushReport()
        for job_id, function, data, priority in self.outbox.pending():
            job = Job(function, data=data, priority=priority, background=True, id=job_id)
            outcome = self._one(job, None)
            if outcome.error is not None:
                self.outbox.note_error(job_id, outcome.error)
                log.warning("outbox: job %s on %s still undeliverable: %s", job_id, function,
                            outcome.error)
                break
            self.outbox.delete(job_id)
            report.delivered += 1
            log.info("outbox: delivered job %s on %s as %s", job_id, function,
                     outcome.request.handle)
        report.remaining = len(self.outbox)
        return report


def result_of(outcome):
    """The Result of a finished foreground job (errors become status 'error')."""
    job, request = outcome.job, outcome.request
    if outcome.error is not None:
        return Result(status=STATUS_ERROR, error=str(outcome.error), id=job.id,
                      attempts=len(outcome.attempts))
    raw = job.data is not None
    if request.state == JOB_COMPLETE:
        return _decode(request.result, raw, STATUS_OK, job.id)
    if request.state == JOB_FAILED and request.data_updates:
        return _decode(request.data_updates[-1], raw, STATUS_FAILED, job.id)
    return Result(status=STATUS_FAILED, id=job.id,
                  error="no result: gearmand dropped the job (a worker died on every one of "
                        "its --job-retries attempts) or a foreign worker failed it without "
                        "details (bare WORK_FAIL)")


def _decode(data, raw, status, job_id):
    if raw:
        key = "stdout" if status == STATUS_OK else "stderr"
        return Result(status=status, id=job_id, **{key: data},
                      error=None if status == STATUS_OK else "the job failed")
    try:
        return Result.decode(data)
    except EnvelopeError as err:
        return Result(status=STATUS_ERROR, id=job_id, error=f"undecodable result: {err}",
                      stdout=data)


__all__ = ["JobClient", "Job", "Delivery", "Result", "ServerUnavailable", "OUTBOX"]
