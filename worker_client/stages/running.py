"""Stages around the attempt: the start notice, the watchdog's view of a task, a
command's progress and followed output, retries, hooks, and the lost connection."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from threading import get_ident
from typing import Any

from gearman_frame.envelope import STATUS_CANCELLED
from gearman_frame.logs import cut
from gearman_frame.wire import AbandonJob

from ..follow import Follower
from ..line_progress import LineProgress
from ..reports import Progress
from ..stats import Stats
from .base import Callback, Run, Stage

log = logging.getLogger(__name__)


def attempted(run: Run, result) -> bool:
    """True for a result an attempt made (not a refusal or a job that could not run)."""
    return run.request is not None and run.refused is None and result.attempts > 0


class StartNotice(Stage):
    """Tells a command job's channel that its run began (its runs are counted from these:
    a run whose worker died leaves its notice)."""

    def __init__(self, notice: Callback):
        self.notice = notice

    def before(self, run):
        if run.request is not None and run.request.reply_to and run.is_command:
            self.notice(run.job, run.request)
        return None


class LostConnection(Stage):
    """A command whose job's connection went away while it ran has no one to answer:
    gearmand hands the job to another worker, so no result is sent from here."""

    def after(self, run, result):
        if run.is_command and not run.batch and run.job.gone():
            raise AbandonJob(f"gearmand {run.job.server} went away while it ran: no result "
                             "here, gearmand hands the job to another worker")
        return result


class Hooks(Stage):
    """A task's ``on_success``/``on_failure`` hooks with the job (its Request: id, args,
    kwargs) and the result; a hook that raises is logged and changes nothing."""

    def after(self, run, result):
        if attempted(run, result):
            call_hook(run.handler.task, "on_success" if result.ok else "on_failure",
                      run.request, result)
        return result


def call_hook(task, name, request, result):
    hook = getattr(task, name, None)
    if hook is None:
        return
    log.info("%s hook: %s", name, getattr(hook, "__name__", hook))
    try:
        hook(request, result)
    except Exception as err:  # a hook's failure is not the job's
        log.error("%s hook %s raised %s: %s (the job's outcome stands)", name,
                  getattr(hook, "__name__", hook), type(err).__name__, cut(str(err)))


@dataclass
class RunningTask:
    """A Python task's attempt in progress, watched for its timeout by the process's
    watchdog (WorkerPool): a thread cannot be killed, so past its deadline the job is
    answered from outside and the process is replaced."""

    handler: Any
    wire_worker: Any
    job: Any
    request: Any
    started: float
    deadline: float = float("inf")
    attempt: int = 0
    timed_out: bool = False
    #: run by after_timeout's thread (the job was taken over), not the serving thread
    retry: bool = False


class Watchdog(Stage):
    """Shows a Python task's attempts to the process's watchdog, which answers a task past
    its timeout from outside (a thread cannot be killed)."""

    def __init__(self, running: dict):
        self.running = running

    def before(self, run):
        if not run.is_command and run.request is not None and not run.batch:
            self.running[get_ident()] = RunningTask(run.handler, run.wire, run.job,
                                                    run.request, run.started)
        return None

    def after(self, run, result):
        self.running.pop(get_ident(), None)
        return result

    def unwind(self, run, why):
        self.running.pop(get_ident(), None)


class Output(Stage):
    """A command reports progress (WORK_STATUS) while it runs: the lines its
    ``progress:`` pattern reads from its stdout, else its seconds elapsed of its timeout;
    a followed job streams its output (WORK_WARNING) and flushes what is left at the end."""

    def __init__(self, stats: Stats):
        self.stats = stats

    def before(self, run):
        if run.is_command and not run.batch:
            spec = run.handler.spec
            if run.request is not None and run.request.follow:
                run.follower = Follower(run.wire, run.job)
            if spec.progress and run.request is not None:
                run.follower = LineProgress(
                    spec.progress, lambda done, total: run.wire.report_progress(
                        run.job, done, total), run.follower, self.stats.progress)
            else:
                run.progress = Progress(run.wire, run.job, spec.timeout)
        return None

    def after(self, run, result):
        if run.follower is not None:
            run.follower.flush()
        return result


class Retries(Stage):
    """The one place that decides to try again: a failed attempt runs again after the
    function's retry policy's delay (a batch's jobs are retried together by the batch)."""

    def __init__(self, attempt: Callback, stats: Stats, stopping):
        self.attempt, self.stats, self.stopping = attempt, stats, stopping

    def after(self, run, result):
        if run.batch:
            return result
        return self.retry(run, result, wait=self.stopping.wait)

    def retry(self, run: Run, result, wait: Callback):
        """Attempt ``run`` again while its policy allows; ``wait(delay)`` True stops it
        (the job is left to gearmand)."""
        policy = run.handler.retry_policy
        while (policy is not None and not result.ok and result.attempts > 0
               and policy.should_retry(result.attempts) and result.status != STATUS_CANCELLED):
            number = result.attempts
            delay = policy.delay_after(number)
            log.warning("attempt %d of %d failed (%s); retrying in %.2fs", number,
                        policy.attempts, result.error, delay)
            self.stats.count(run.handler.name, "retried")
            self.stats.attempt(number + 1)
            if run.request is not None:
                call_hook(run.handler.task, "on_retry", run.request, result)
            if wait(delay):
                raise AbandonJob("worker stopping between attempts")
            result = self.attempt(run)
        return result
