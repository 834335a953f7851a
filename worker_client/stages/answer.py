"""The last stage out: a job's result published to its channel, a background failure
dead-lettered, and the answer gearmand gets (a raw job's in plain bytes)."""
from __future__ import annotations

import logging
import time

from gearman_frame.envelope import STATUS_CANCELLED, STATUS_ERROR, Result
from gearman_frame.signing import EXPIRED
from gearman_frame.wire import AbandonJob, JobFailed

from .base import Callback, Stage

log = logging.getLogger(__name__)

#: Seconds a thread waits before leaving a job unanswered that it could neither run nor
#: dead-letter: gearmand hands the job out again at once.
ABANDON_PAUSE = 1.0


def encoded(handler, result: Result) -> tuple[Result, bytes]:
    """``(result, its JSON)``; a result JSON cannot carry (a lone surrogate from a hostile
    job) becomes an error result that can."""
    try:
        return result, result.encode()
    except ValueError as err:
        safe = handler.result(STATUS_ERROR, f"the result could not be encoded: {err}",
                                  attempts=result.attempts, duration_s=result.duration_s,
                                  id=_printable(result.id))
        return safe, safe.encode()


def final(run, result: Result) -> tuple[Result, bytes]:
    """A job's final ``(result, its JSON)``: its id and duration filled in, encoded once
    (kept in ``run.encoded``: the ledger records these bytes and gearmand gets them)."""
    if run.encoded is None:
        if result.id is None:
            result.id = run.job_id
        result.duration_s = round(time.monotonic() - run.started, 6)
        run.encoded = encoded(run.handler, result)
    return run.encoded


class Answer(Stage):
    """Publishes, dead-letters and sets ``run.answer``. A job whose result nobody took
    (neither gearmand nor the spool) is left unanswered after a pause: gearmand keeps it,
    never dropped."""

    def __init__(self, publish: Callback | None, dead_letter: Callback | None, stopping):
        self.publish, self.dead_letter, self.stopping = publish, dead_letter, stopping

    def after(self, run, result):
        result, text = final(run, result)  # as the ledger recorded it, or read it
        if run.refused is not None and not self._refused_but_kept(run):
            run.answer = JobFailed(text if run.request is not None
                                   else f"refused: {result.error}".encode())
            return result
        request = run.request
        if request is not None and request.reply_to and self.publish is not None:
            if not self.publish(run.job, request, result, time.time() - result.duration_s):
                self.stopping.wait(ABANDON_PAUSE)  # unanswered: gearmand keeps the job
                raise AbandonJob("neither a server nor the spool took its result")
        if result.ok:
            log.info("done: %sok after %d attempt(s) in %.3fs",
                     "raw job " if run.raw is not None else "", result.attempts,
                     result.duration_s)
            # a raw job's answer is the command's stdout as it is (a task takes no raw job)
            run.answer = run.outcome.stdout if run.raw is not None else text
            return result
        log.warning("failed: %s (%s) after %d attempt(s)", result.status, result.error,
                    result.attempts)
        background = True if request is None else request.background
        # a replayed failure is dead-lettered again: its run may have died before it could
        # (a letter has the job's unique, so gearmand merges a copy still queued)
        if background and self.dead_letter is not None and result.status != STATUS_CANCELLED:
            if not self.dead_letter(run.job, result):
                # Neither gearmand nor the disk took it: unanswered, the job stays with
                # gearmand (bounded by its --job-retries), never dropped; after a pause,
                # so a worker that can do nothing (out of descriptors) does not spin on it.
                self.stopping.wait(ABANDON_PAUSE)
                raise AbandonJob("neither a server nor the spool took its dead letter")
        run.answer = JobFailed(self._raw_failure(run, result) if run.raw is not None
                               else text)
        return result

    @staticmethod
    def _refused_but_kept(run):
        """Only a job whose signature was good but whose time had passed (it waited in a
        queue too long) is dead-lettered, so an admin can resend it: the rest are not ours
        to keep."""
        return run.refused == EXPIRED and run.request is not None and run.request.background

    @staticmethod
    def _raw_failure(run, result):
        """Plain text a foreign client can show: the command's stderr tail and what
        happened, else the result's error."""
        outcome = run.outcome
        if outcome is not None and result.attempts and outcome.stdout_size <= len(outcome.stdout):
            return outcome.stderr[-4000:] + f"\n{outcome.describe()}\n".encode()
        return (result.error or "").encode("utf-8", "replace")


def _printable(text):
    """``text`` with anything UTF-8 cannot carry escaped (None stays None)."""
    return None if text is None else str(text).encode("utf-8", "backslashreplace").decode()
