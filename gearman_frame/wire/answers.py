"""The half of a WireWorker that runs an assigned job and answers it.

A job's answer (WORK_COMPLETE, or WORK_DATA with the details then WORK_FAIL) is queued
with the submits held for it, then the next request (a grab, or PRE_SLEEP), and both go
out in one send. Progress and streamed output go out while the job runs, from whichever
thread runs it.
"""
from __future__ import annotations

from typing import Any

import logging
import threading

from ..errors import ConnectionLost
from . import packets as p
from .assignment import AbandonJob, Job, JobFailed
from .connection import Connection
from .refusals import Refusals

log = logging.getLogger(__name__)

#: What servers without parts of the protocol (the Perl job server) refused, per process.
REFUSED = Refusals()
#: What a worker's unanswered job becomes once another thread took it over.
_TAKEN = object()


def encode(outcome: object) -> bytes:
    """A callback's answer as bytes (text as UTF-8); TypeError for anything else."""
    if isinstance(outcome, (bytes, bytearray, memoryview, str)):
        return p.as_bytes(outcome)
    raise TypeError(f"job data must be bytes or str, got {type(outcome).__name__}"
                    if outcome is not None else "job data must be bytes or str, got None")


class JobAnswers:
    """Runs jobs and answers them; the serving loop and connections are WireWorker's."""

    abilities: dict
    busy: bool
    _unanswered: object
    _answer_lock: threading.Lock

    def grab_directly(self) -> bool:
        raise NotImplementedError

    def _grab(self, link: Any, ahead: bool = False) -> None:
        raise NotImplementedError

    def _release(self, link: Any) -> None:
        raise NotImplementedError

    def handle_error(self, conn: Connection) -> None:
        raise NotImplementedError

    def serve_job(self, job: Job) -> None:
        """One job, start to end, in order: run the callback and queue its answer; queue
        the next request (GRAB_JOB at once while that keeps finding work, else release the
        job lock and PRE_SLEEP until gearmand says NOOP); write both in one send. An answer
        with submits before it (a result to publish) goes after the grab: gearmand hands out
        the next job first, and files the result while this thread runs that job."""
        ran = self._run(job)
        self._after_job()  # after its answer is queued, before the next grab
        if not ran:
            return
        link = job.link
        if job.answerable and not job.grabbed_ahead:  # else the grab went with its answer
            if self.grab_directly():
                self._grab(link)
            else:
                self._release(link)
                link.conn.queue(p.PRE_SLEEP)
        self.send_answer(job)

    def _after_job(self) -> None:
        """Called between a job's answer and the next grab (fleet-wide caps look again)."""

    def _run(self, job: Job) -> bool:
        """Run the callback; whatever happens, queue the job's answer and keep the thread
        alive. False if the job was abandoned (its connection is dropped). A job another
        thread answered meanwhile (``answer_taken``) gets no second answer."""
        self.busy = True
        self._unanswered = job
        try:
            outcome = self._call(job)
            with self._answer_lock:
                if self._unanswered is job:
                    self._queue_answer(job, outcome, serving=True)
                else:
                    log.info("job %s (%s): its callback returned after the job was answered "
                             "(timeout); its outcome is dropped", job.unique, job.handle)
            return True
        except AbandonJob as why:
            log.warning("job %s (%s): left unanswered for gearmand to requeue: %s",
                        job.unique, job.handle, why)
            for submit in _publications(job):
                submit.lost("the job was abandoned")
            if job.answerable:
                self.handle_error(job.link.conn)
            return False
        finally:
            self._unanswered = None
            self.busy = False

    def _call(self, job: Job) -> bytes | JobFailed:
        try:
            outcome = self.abilities[job.function](self, job)
            return outcome if isinstance(outcome, JobFailed) else encode(outcome)
        except AbandonJob:
            raise
        except Exception as err:  # never let a job end the thread; never WORK_EXCEPTION
            log.exception("job %s on %s: callback failed", job.unique, job.function)
            return JobFailed(f"{type(err).__name__}: {err}".encode("utf-8", "replace"))

    def _queue_answer(self, job: Job, outcome: bytes | JobFailed,
                      serving: bool = False) -> None:
        """Queue the job's held submits, then its answer; ``serving``: from the thread that
        serves the connection, which then sends its next grab ahead of held submits."""
        held = _publications(job)
        if not job.answerable:
            for submit in held:
                submit.lost("the connection to gearmand was lost")
            return
        link, conn, handle = job.link, job.link.conn, job.handle
        if held:
            if serving and getattr(self, "caps", None) is None and self.grab_directly():
                self._grab(link, ahead=True)
                job.grabbed_ahead = True
            for submit in held:
                link.queue_submit(submit)
        if isinstance(outcome, JobFailed):
            if outcome.data:
                details = (p.WORK_EXCEPTION if REFUSED.has(conn.address, "WORK_DATA")
                           else p.WORK_DATA)
                conn.queue(details, handle, p.as_bytes(outcome.data))
            conn.queue(p.WORK_FAIL, handle)
        else:
            conn.queue(p.WORK_COMPLETE, handle, outcome)

    def send_answer(self, job: Job) -> None:
        """Write the job's queued answer (and what was queued after it) to its socket."""
        conn = job.link.conn
        try:
            if not job.answerable:
                raise ConnectionLost("the connection was lost while the job ran")
            conn.flush_all()
        except ConnectionLost as err:
            log.error("job %s (%s): result not delivered, gearmand %s went away: %s",
                      job.unique, job.handle, conn.address, err)
            self.handle_error(conn)  # what was submitted on it is reported lost

    def _update(self, job: Job, cmd: int, *fields: bytes | str) -> bool:
        if not job.answerable:
            return False
        try:
            job.link.conn.queue(cmd, job.handle, *fields)
            job.link.conn.flush_all(1.0)
            return True
        except ConnectionLost:
            return False

    def report_progress(self, job: Job, numerator: int, denominator: int) -> bool:
        """Send WORK_STATUS for a running job; False (and nothing raised) if the job's
        server went away: progress is best effort, the job goes on."""
        if self._update(job, p.WORK_STATUS, str(numerator), str(denominator)):
            return True
        log.warning("job %s (%s): progress not sent, gearmand %s went away",
                    job.unique, job.handle, job.server)
        return False

    def send_output(self, job: Job, data: bytes | str) -> bool:
        """Stream a piece of a running job's output to its sender (WORK_WARNING); False
        (nothing raised) if the job's server went away."""
        if self._update(job, p.WORK_WARNING, p.as_bytes(data)):
            return True
        log.warning("job %s (%s): output not streamed, gearmand %s went away",
                    job.unique, job.handle, job.server)
        return False

    def take_over(self, job: Job) -> bool:
        """From another thread, while this one hangs in ``job``'s callback (a Python task
        past its timeout: a thread cannot be killed): make the job the caller's to answer
        (``answer_taken``); the callback's own answer, if it ever returns, is dropped.
        False if the callback returned first (it answers)."""
        with self._answer_lock:
            if self._unanswered is not job:
                return False
            self._unanswered = _TAKEN
            return True

    def answer_taken(self, job: Job, outcome: object) -> None:
        """Answer a job taken over with ``outcome`` (bytes, or JobFailed). The hung thread
        writes nothing meanwhile, so the socket is the caller's."""
        with self._answer_lock:
            self._queue_answer(job, outcome if isinstance(outcome, JobFailed)
                               else encode(outcome))
            self.send_answer(job)


def _publications(job: Job) -> tuple:
    """The submits held for ``job``'s answer, taken (each goes out, or is lost, once)."""
    held, job.publications = job.publications, ()
    return held
