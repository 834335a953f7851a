"""Batch tasks: ``@task("store", batch={"max": 5, "wait": 2.0})`` gets up to 5 queued
jobs at once (from any senders) and returns one result per job.

A batch runs in a thread of its own whose connection holds the jobs it gathers
(gearman_frame.wire.batch); each job still goes through everything a single job does:
the signature gate, the result channel, retries (the failed jobs of a batch are tried
again together), hooks and dead letters, and its sender gets its own result.
"""
from __future__ import annotations

import logging

from gearman_frame.envelope import STATUS_FAILED
from gearman_frame.logs import cut
from gearman_frame.wire import AbandonJob

from .jobs import FunctionHandler
from .stages import Run, job_id_of
from .stages.running import call_hook

log = logging.getLogger(__name__)


class BatchHandler(FunctionHandler):
    """Serves one batch task: called with the gathered jobs, returns their answers. Each
    job goes through the stages as a single one does; the batch runs the attempts."""

    def __call__(self, wire_worker, jobs):
        worker = wire_worker.client_id or self.ctx.name
        pipeline, stats = self.ctx.pipeline, self.ctx.stats
        stats.begin(self.name, f"{job_id_of(jobs[0])} (+{len(jobs) - 1})", self.timeout)
        runs = [Run(job, self, wire_worker, worker, batch=True) for job in jobs]
        try:
            ended = [pipeline.admit(run) for run in runs]
            live = [i for i, result in enumerate(ended) if result is None]
            log.info("batch of %d job(s) on %s (%d to run)", len(jobs), self.name, len(live))
            ran = dict(zip(live, self._with_batch_retries([runs[i].request for i in live])))
            return [pipeline.finish(run, ran[i] if i in ran else ended[i])
                    for i, run in enumerate(runs)]
        except AbandonJob as why:
            for run in runs:
                if run.reached >= 0:
                    pipeline.unwind(run, why)
            raise

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
                    call_hook(self.task, "on_retry", requests[index], result)
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
            return [self.result(STATUS_FAILED, f"{type(err).__name__}: {err}")
                    for _ in requests]
        if not isinstance(values, (list, tuple)) or len(values) != len(requests):
            count = len(values) if isinstance(values, (list, tuple)) else type(values).__name__
            return [self.result(STATUS_FAILED, f"batch task returned {count} results for "
                                                f"{len(requests)} jobs (one per job, in order)")
                    for _ in requests]
        return [self.result(STATUS_FAILED, f"{type(v).__name__}: {v}")
                if isinstance(v, Exception) else self._value_result(v) for v in values]
