"""A worker connection set that serves one function in batches.

gearmand lets one worker connection hold many jobs at once (measured on 1.1.20: a
connection took 8 jobs with 8 GRAB_JOB_UNIQ in a row, answering none, and found no limit;
when it closes, every job it held is handed out again). So a batch worker grabs jobs one
after another, from whichever sender queued them, until it holds ``max_jobs`` or
``wait`` seconds have passed since the first; then its callback gets them together and
each job is answered on its own (its sender gets its own result).
"""
from __future__ import annotations

from typing import Any, Sequence

import logging
import time

from . import packets as p
from .answers import encode
from .assignment import AbandonJob, Job, JobFailed
from .connection import Connection
from .worker import WireWorker

log = logging.getLogger(__name__)


#: Grabs a gathering batch worker keeps out at once: gearmand answers each with a job or
#: NO_JOB, in order, so gathering 100 jobs takes a few round trips instead of 100.
GRAB_DEPTH = 16


class BatchWireWorker(WireWorker):
    """A WireWorker whose callback (``register_task``) takes ``(worker, jobs)`` and returns
    one outcome per job, in order (bytes/str, or JobFailed).

    While it gathers, it keeps up to GRAB_DEPTH grabs out (once the server has answered
    one: a server that refuses our grab command is asked one at a time). A batch is run
    only when no grab is out, so the submits its answers carry (results to channels) are
    never sent between grabs and their answers: every ERROR is still known to be a
    submit's or a grab's by its order."""

    def __init__(self, servers: Sequence, max_jobs: int, wait: float,
                 client_id: str | None = None, max_packet: int | None = None,
                 dead_after: float | None = None) -> None:
        super().__init__(servers, client_id=client_id, max_packet=max_packet,
                         dead_after=dead_after)
        self.max_jobs, self.wait = max_jobs, wait
        self._held: list = []
        self._deadline = 0.0
        self._full = False
        #: Grabs sent and not answered yet.
        self._out = 0

    def grab_directly(self) -> bool:
        return False

    def _grab(self, link: Any, ahead: bool = False) -> None:
        """Top the grabs out up: one on a link whose server has not answered a grab yet,
        else as many as the batch has room for, at most GRAB_DEPTH."""
        room = self.max_jobs - len(self._held)
        want = min(GRAB_DEPTH, room) if link.grab_ok else min(1, room)
        while self._out < want:
            super()._grab(link)
            self._out += 1

    def _grab_answered(self, link: Any) -> None:
        self._out = max(0, self._out - 1)

    def on_no_job(self, link: Any) -> None:
        if self._out == 0:  # the last grab out: nothing more is queued
            super().on_no_job(link)

    def on_assign(self, link: Any, job: Job) -> None:
        """Hold the job; ask for more at once until the batch is full."""
        if not self._held:
            self._deadline = time.monotonic() + self.wait
        self._held.append(job)
        if len(self._held) < self.max_jobs and not self.stopping:
            self._grab(link)  # keeps the job lock: the answers are jobs or NO_JOB
            return
        if self._out == 0:
            self._release(link)
            link.conn.queue(p.PRE_SLEEP)
        self._full = len(self._held) >= self.max_jobs

    def _drop(self, conn: Connection) -> None:
        if conn in self._links:
            self._out = 0  # what was out on it is gearmand's again
        super()._drop(conn)

    def _after_poll(self, live: list[Connection], active: bool) -> None:
        super()._after_poll(live, active)
        if (self._held and self._out == 0
                and (self._full or self.stopping or time.monotonic() >= self._deadline)):
            self._run_batch()

    def work(self, poll_timeout: float | None = None) -> None:
        """Serve until stop(); a batch being gathered is run before the thread ends."""
        try:
            super().work(poll_timeout=min(0.25, self.wait / 4 or 0.01)
                         if poll_timeout is None else poll_timeout)
        finally:
            if self._held:  # gathered but not run: gearmand hands them out again
                log.info("%d gathered job(s) left for gearmand to hand out again",
                         len(self._held))
                self._held, self._full = [], False

    def _run_batch(self) -> None:
        jobs, self._held, self._full = self._held, [], False
        self.busy = True
        try:
            outcomes = self._call_batch(jobs)
            if outcomes is None:
                return
            for job, outcome in zip(jobs, outcomes):
                self._queue_answer(job, outcome)
            for job in {job.link.conn: job for job in jobs}.values():
                self.send_answer(job)
        finally:
            self.busy = False

    def _call_batch(self, jobs: list[Job]) -> list | None:
        callback = self.abilities[jobs[0].function]
        try:
            outcomes = list(callback(self, jobs))
            if len(outcomes) != len(jobs):
                raise ValueError(f"{len(outcomes)} outcomes for {len(jobs)} jobs")
            return [o if isinstance(o, JobFailed) else encode(o) for o in outcomes]
        except AbandonJob as why:
            log.warning("a batch of %d job(s) left unanswered for gearmand to requeue: %s",
                        len(jobs), why)
            for conn in {job.link.conn for job in jobs if job.answerable}:
                self.handle_error(conn)
            return None
        except Exception as err:  # never let a batch end the thread
            log.exception("batch of %d job(s) on %s: callback failed", len(jobs),
                          jobs[0].function)
            failed = JobFailed(f"{type(err).__name__}: {err}".encode("utf-8", "replace"))
            return [failed] * len(jobs)
