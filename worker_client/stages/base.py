"""The worker's pipeline: every concern of a job (limits, the gate, retries, hooks, the
result channel, dead letters, stats, recycling) is a Stage, and a job goes through them.

The model is dramatiq's middleware: each stage has a ``before`` (which may end the job
with a result, skipping the stages after it and the attempt), an ``after`` (which may
replace the result: retries run the attempt again there), and ``unwind`` for a job left
unanswered (AbandonJob: gearmand hands it out again) or answered elsewhere (TakenOver).
``after`` and ``unwind`` run in reverse order, only for the stages whose ``before`` ran.
A single job, a raw payload and each job of a batch take the same path; a handler only
runs an attempt.
"""
from __future__ import annotations

import errno
import logging
import time
from typing import TYPE_CHECKING, Any, Callable

from gearman_frame.envelope import STATUS_ERROR, Request, Result
from gearman_frame.logs import job_context
from gearman_frame.wire import AbandonJob, Job

if TYPE_CHECKING:
    from ..jobs import FunctionHandler

log = logging.getLogger(__name__)


class Rejected(Exception):
    """Raised when a job cannot run at all (bad fields): it fails without any attempt."""


class TakenOver(Exception):
    """Raised in a task's thread when its attempt returns after the watchdog timed it out:
    the job is answered elsewhere, and nothing more is done for it here."""


def job_id_of(job) -> str:
    """A job's id as logs, results and commands see it: its unique key, or gearmand's
    handle for a job that came without one (sent without a unique, or grabbed with
    GRAB_JOB from a server that has no GRAB_JOB_UNIQ)."""
    return job.unique or str(job.handle)


class Run:
    """One job on its way through the stages."""

    __slots__ = ("job", "handler", "wire", "worker", "started", "request", "raw", "batch",
                 "refused", "attempts", "outcome", "progress", "follower", "answer",
                 "reached", "claimed", "encoded", "replayed", "claim_number", "trace")

    def __init__(self, job: Job, handler: FunctionHandler, wire: Any, worker: str,
                 batch: bool = False):
        self.job, self.handler, self.wire, self.worker = job, handler, wire, worker
        self.started = time.monotonic()
        #: The job's envelope, or (a payload that is not one) its raw bytes.
        self.request: Request | None = None
        self.raw: bytes | None = None
        #: One of a batch: the batch handler runs the attempts (and their retries).
        self.batch = batch
        #: Why the gate refused it (None: it was let in).
        self.refused: str | None = None
        #: Attempts made so far; the last command's ProcessOutcome (a raw job's answer).
        self.attempts = 0
        self.outcome: Any = None
        #: A command's progress reporter and output follower (None for tasks).
        self.progress: Any = None
        self.follower: Any = None
        #: What goes back to gearmand: bytes (done) or JobFailed.
        self.answer: Any = None
        #: The index of the last stage whose ``before`` ran (its ``after`` and those of
        #: the stages outside it run).
        self.reached = -1
        #: The ledger's claim is held (the claim stage records the outcome).
        self.claimed = False
        #: ``(result, its JSON)`` once final (recorded in the ledger, or read from it).
        self.encoded: tuple[Result, bytes] | None = None
        #: Answered from the ledger: it ran already, nothing of it is done again.
        self.replayed = False
        #: The ledger's count of claims of this job (2 and up: a takeover after its
        #: holder died, which may have done part or all of the work); 0: no ledger.
        self.claim_number = 0
        #: The job's spans (a JobTrace) while it is traced; None: tracing is off.
        self.trace: Any = None

    @property
    def function(self) -> str:
        return self.job.function

    @property
    def job_id(self) -> str:
        return self.request.id if self.request is not None else job_id_of(self.job)

    @property
    def is_command(self) -> bool:
        return self.handler.task is None

    def context(self):
        """The log context of this job: worker, function and job id on every line."""
        return job_context(worker=self.worker, function=self.function, job_id=self.job_id)


class Stage:
    """One concern of a job; override what it needs."""

    def before(self, run: Run) -> Result | None:
        return None

    def after(self, run: Run, result: Result) -> Result:
        return result

    def unwind(self, run: Run, why: BaseException) -> None:
        """The job leaves without an answer from here (AbandonJob, TakenOver)."""


class Pipeline:
    """The stages, outermost first, and the one way through them. Only the hooks a stage
    overrides are called (a job pays for what its stages do, not for their count)."""

    def __init__(self, stages: list[Stage]):
        self.stages = stages
        self._befores = [(i, s.before) for i, s in enumerate(stages)
                         if type(s).before is not Stage.before]
        #: (index, hook), innermost first: run for the stages up to ``run.reached``.
        self._afters = [(i, s.after) for i, s in reversed(list(enumerate(stages)))
                        if type(s).after is not Stage.after]
        self._unwinds = [(i, s.unwind) for i, s in reversed(list(enumerate(stages)))
                         if type(s).unwind is not Stage.unwind]

    def serve(self, run: Run) -> Any:
        """A whole job: admitted, attempted, finished; returns its answer (None: it was
        answered elsewhere)."""
        with run.context():
            try:
                result = self._admit(run)
                if result is None:
                    result = self.attempt(run)
                return self._finish(run, result)
            except (AbandonJob, TakenOver) as why:
                self._unwind(run, why)
                if isinstance(why, TakenOver):
                    return None
                raise

    def admit(self, run: Run) -> Result | None:
        """The stages' befores (a batch's jobs, one by one): a result if the job ended
        there, else None (it is to be attempted)."""
        with run.context():
            return self._admit(run)

    def finish(self, run: Run, result: Result) -> Any:
        """The afters for a job a batch ran (or that ended in ``admit``); its answer."""
        with run.context():
            return self._finish(run, result)

    def unwind(self, run: Run, why: BaseException) -> None:
        with run.context():
            self._unwind(run, why)

    def attempt(self, run: Run) -> Result:
        """One attempt by the handler; a job that cannot run at all (Rejected) or a
        failure of the worker itself (EMFILE ...) is still a result, never tried again."""
        if run.trace is not None:
            return run.trace.attempt(run, self._attempt)
        return self._attempt(run)

    def _attempt(self, run: Run) -> Result:
        try:
            return run.handler.attempt(run)
        except Rejected as why:
            return run.handler.result(STATUS_ERROR, str(why), attempts=0)
        except (AbandonJob, TakenOver):
            raise
        except Exception as err:  # the system's (EMFILE ...) or ours: still a result
            return _worker_error(run, err)

    def _admit(self, run: Run) -> Result | None:
        run.reached = len(self.stages) - 1
        try:
            for index, before in self._befores:
                result = before(run)
                if result is not None:
                    run.reached = index
                    return result
        except (AbandonJob, TakenOver, Rejected):
            raise
        except Exception as err:  # the system's (EMFILE ...) or ours: still a result
            run.reached = index
            return _worker_error(run, err)
        return None

    def _finish(self, run: Run, result: Result) -> Any:
        reached = run.reached
        for index, after in self._afters:
            if index <= reached:
                result = after(run, result)
        return run.answer

    def _unwind(self, run: Run, why: BaseException) -> None:
        reached = run.reached
        for index, unwind in self._unwinds:
            if index <= reached:
                unwind(run, why)


def _worker_error(run: Run, err: Exception) -> Result:
    """A failure of the worker itself, still a result. The system's (EMFILE: out of file
    descriptors, ENOMEM ...) is one line naming it; anything else is our bug, logged with
    its traceback."""
    code = errno.errorcode.get(err.errno or 0) if isinstance(err, OSError) else None
    if code is not None:
        why = f"{code}: {getattr(err, 'strerror', err)}"
        log.error("job could not be handled: %s", why)
    else:
        why = f"{type(err).__name__}: {err}"
        log.exception("job could not be handled")
    return run.handler.result(STATUS_ERROR, f"worker error: {why}", attempts=0)


#: A stage's view of the pool: ``(job, result) -> bool`` and the like.
Callback = Callable[..., Any]
