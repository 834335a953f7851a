"""Batch tasks: ``@task("store", batch={"max": 5, "wait": 2.0})`` gets up to 5 queued
jobs at once (from any senders) and returns one result per job.

A batch runs in a thread of its own whose connection holds the jobs it gathers
(gearman_frame.wire.batch); each job still goes through everything a single job does:
the signature gate, the result channel, retries (the failed jobs of a batch are tried
again together), hooks and dead letters, and its sender gets its own result.
"""
from __future__ import annotations

import logging
import time

from gearman_frame.envelope import STATUS_ERROR, STATUS_FAILED
from gearman_frame.errors import EnvelopeError
from gearman_frame.logs import cut, job_context
from gearman_frame.wire import AbandonJob

from .jobs import FunctionHandler, Rejected, job_id_of

log = logging.getLogger(__name__)


class BatchHandler(FunctionHandler):
    """Serves one batch task: called with the gathered jobs, returns their answers."""

    def __call__(self, wire_worker, jobs):
        started = time.monotonic()
        worker = wire_worker.worker_client_id or self.ctx.name
        outcomes: list = [None] * len(jobs)
        live = []
        stats = self.ctx.stats
        stats.begin(self.name, f"{job_id_of(jobs[0])} (+{len(jobs) - 1})", self.timeout)
        try:
            for index, job in enumerate(jobs):
                with job_context(worker=worker, function=job.task, job_id=job_id_of(job)):
                    outcome, request = self._admit(job, started)
                if outcome is None:
                    live.append((index, job, request))
                else:
                    outcomes[index] = outcome
            log.info("batch of %d job(s) on %s (%d to run)", len(jobs), self.name, len(live))
            results = self._with_batch_retries([request for _i, _j, request in live])
            for (index, job, request), result in zip(live, results):
                with job_context(worker=worker, function=job.task, job_id=request.id):
                    result.id = request.id
                    self._hook("on_success" if result.ok else "on_failure", request, result)
                    outcomes[index] = self._final(job, request, result, started)
        except AbandonJob:
            stats.forget()
            raise
        return outcomes

    def _admit(self, job, started):
        """``(None, request)`` for a job the batch runs, else ``(its answer, None)``."""
        request = None
        try:
            if self.ctx.on_job is not None:
                self.ctx.on_job()
            request, raw = self._parse(job.data)
            why = self._why_refused(job, request)
            if why is not None:
                return self._refuse(job, request, why, started), None
            if request is None:
                raise Rejected("a batch task takes JSON jobs, not a raw payload")
            return None, request
        except (EnvelopeError, Rejected) as err:
            text = f"bad job envelope: {err}" if isinstance(err, EnvelopeError) else str(err)
            result = self._result(STATUS_ERROR, text, attempts=0, id=job_id_of(job))
            return self._final(job, request, result, started), None

    def _with_batch_retries(self, requests):
        """Run the batch; the jobs that failed are tried again together, by the policy."""
        policy = self.spec.retry if self.spec else None
        results: list = [None] * len(requests)
        pending, number = list(range(len(requests))), 0
        while pending:
            number += 1
            got = self._call_batch([requests[i] for i in pending])
            again = []
            for index, result in zip(pending, got):
                result.attempts = number
                if result.ok or policy is None or not policy.should_retry(number):
                    results[index] = result
                else:
                    again.append(index)
                    self.ctx.stats.count(self.name, "retried")
                    self._hook("on_retry", requests[index], result)
            if again:
                delay = policy.delay_after(number) if policy else 0.0
                log.warning("%d job(s) of the batch failed; retrying in %.2fs",
                            len(again), delay)
                if self.ctx.stopping.wait(delay):
                    raise AbandonJob("worker stopping between attempts")
            pending = again
        return results

    def _call_batch(self, requests):
        """One call of the task with ``requests`` (each has .id, .args, .kwargs): a Result
        per request (an Exception in the returned list fails that job alone)."""
        try:
            values = self.task(list(requests))
        except Exception as err:
            log.warning("batch task raised %s: %s", type(err).__name__, cut(str(err)))
            return [self._result(STATUS_FAILED, f"{type(err).__name__}: {err}")
                    for _ in requests]
        if not isinstance(values, (list, tuple)) or len(values) != len(requests):
            count = len(values) if isinstance(values, (list, tuple)) else type(values).__name__
            return [self._result(STATUS_FAILED, f"batch task returned {count} results for "
                                                f"{len(requests)} jobs (one per job, in order)")
                    for _ in requests]
        return [self._result(STATUS_FAILED, f"{type(v).__name__}: {v}")
                if isinstance(v, Exception) else self._value_result(v) for v in values]
