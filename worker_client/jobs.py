"""One Gearman function's attempts: a command run, or a Python task called.

A :class:`FunctionHandler` serves one function. The stages (``worker_client.stages``)
decide everything around an attempt (limits, the gate, retries, hooks, the result
channel, dead letters, stats); the handler only runs one attempt and says what came of
it. Whatever happens inside (a missing template field, a task that raises or returns
the wrong type, a command that fails or hangs) becomes a result and never escapes.
"""
from __future__ import annotations

import logging
import re
import socket
import time
import traceback
from dataclasses import dataclass, field
from threading import Event, Lock, get_ident
from typing import Any, Callable

from gearman_frame.config import (DEFAULT_FUNCTION_TIMEOUT, DEFAULT_MAX_KWARGS,
                                  DEFAULT_OUTPUT_LIMIT, DEFAULT_PROGRESS_INTERVAL)
from gearman_frame.envelope import (STATUS_CANCELLED, STATUS_FAILED, STATUS_OK,
                                    STATUS_TIMEOUT, Result, dumps, why_raw)
from gearman_frame.logs import cut, job_context
from gearman_frame.tasks import reporting
from gearman_frame.templates import TemplateError, render_argv, render_shell
from gearman_frame.tracing import command_environment
from gearman_frame.workflows.steps import prev_fields
from gearman_frame.wire import AbandonJob, JobFailed

from .gate import Gate
from .stages.base import Pipeline, Rejected, Run, TakenOver, job_id_of
from .follow import INTERVAL as FOLLOW_INTERVAL
from .reports import TaskProgress
from .stages.running import Retries, RunningTask, call_hook
from .stats import Stats
from .veryeasyprocess import TAIL_BYTES, Runner, quote

log = logging.getLogger(__name__)

HOST = socket.gethostname()
#: Environment variable giving a command its job id: the key to make a command idempotent
#: (a job may run again after a crash; see docs/guarantees.md).
JOB_ID_VARIABLE = "GEARMAN_FRAME_JOB_ID"
#: With the job ledger on: 1 for a job's first claim, 2 and up for a takeover (its earlier
#: holder died, maybe after the command's work was done: the one window the ledger cannot
#: close), so a command can check its own work before doing it again.
CLAIM_VARIABLE = "GEARMAN_FRAME_CLAIM"


_JSON_SCALARS = (str, int, float, bool)
#: Decides, once, whether an attempt ended in time or was timed out by the watchdog.
_EXPIRY_LOCK = Lock()


@dataclass
class WorkerContext:
    """What every handler of one worker process shares."""

    name: str
    runner: Runner
    stopping: Event = field(default_factory=Event)
    #: dead_letter(job, result) -> bool: a background job that failed for good, kept.
    dead_letter: Callable[[Any, Result], bool] | None = None
    #: publish(job, request, result, started_at) -> bool: a result to its channel.
    publish: Callable[[Any, Any, Result, float], bool] | None = None
    #: notice(job, request): tell a job's channel that a run began.
    notice: Callable[[Any, Any], None] | None = None
    progress_interval: float = DEFAULT_PROGRESS_INTERVAL
    max_kwargs: int = DEFAULT_MAX_KWARGS
    max_payload: int | None = None
    #: The signature gate (None: signing is off, every job is taken).
    gate: Gate | None = None
    #: Called as each job is taken (recycling counts them).
    on_job: Callable[[], None] | None = None
    #: Python tasks running now, by thread id (the watchdog's view).
    running: dict = field(default_factory=dict)
    #: What runs and what ran (`runadmin inspect`).
    stats: Stats = field(default_factory=Stats)
    #: The stages every job goes through, and the retries among them (set by the pool:
    #: see worker_client.stages.build).
    pipeline: Pipeline = field(default_factory=lambda: Pipeline([]))
    retries: Retries | None = None
    #: The job ledger's claims (None: store.url is off, jobs run at least once).
    claims: Any = None
    #: OpenTelemetry (gearman_frame.tracing.Tracing; None: tracing is off).
    tracing: Any = None
    #: Fleet-wide caps (worker_client.caps.FleetCaps; None: no function is capped).
    caps: Any = None
    #: send_step(function, request) -> (where, payload): a workflow's next step.
    send_step: Callable[[str, Any], Any] | None = None


class FunctionHandler:
    """Serves one Gearman function, configured (command/shell) or a Python @task."""

    def __init__(self, name, spec, task, context):
        self.name = name
        self.spec = spec
        self.task = task
        self.ctx = context

    # -- entry point called by the wire worker
    def __call__(self, wire_worker, job):
        run = Run(job, self, wire_worker, wire_worker.client_id or self.ctx.name)
        answer = self.ctx.pipeline.serve(run)
        return JobFailed(b"") if answer is None else answer  # None: answered elsewhere

    @property
    def output_limit(self):
        return self.spec.output_limit if self.spec else DEFAULT_OUTPUT_LIMIT

    @property
    def retry_policy(self):
        return self.spec.retry if self.spec else None

    def result(self, status, error=None, **fields):
        """A Result of this worker (its name and host filled in)."""
        return Result(status=status, error=error, worker=self.ctx.name, host=HOST, **fields)

    # -- one attempt (the stages decide whether, and how often)
    def attempt(self, run: Run) -> Result:
        """Run the job once: its command or its task, with the job's envelope or (another
        Gearman client's) raw payload. Raises Rejected if it cannot run at all."""
        run.attempts += 1
        policy = self.retry_policy
        if policy is not None and policy.attempts > 1:
            log.info("attempt %d of %d", run.attempts, policy.attempts)
        if run.request is None:
            result = self._raw_attempt(run)
        elif self.task is not None:  # a step after the first gets its outcome first
            request = run.request
            result = self._call_task((request.prev, *request.args) if request.has_prev
                                     else request.args, request.kwargs)
        else:
            result = self._command_attempt(run)
        result.attempts = run.attempts
        return result

    def _command_attempt(self, run):
        request = run.request
        fields, stdin = request.kwargs, None  # type: tuple[dict, Any]
        if request.has_prev:  # a workflow's step: the step before's outcome as {prev}
            fields, stdin = prev_fields(self.spec, request)
        argv, shell = self._command(fields)
        if self.spec.stdin == "data" and request.args:
            stdin = request.args[0]
        if stdin is not None and not isinstance(stdin, (str, bytes)):
            raise Rejected(f"function {self.name} takes its input (stdin: data) as text or "
                           f"bytes in its first argument, got {type(stdin).__name__}")
        if isinstance(stdin, str):
            try:
                stdin = stdin.encode("utf-8")
            except UnicodeEncodeError:
                raise Rejected("the input (stdin: data) is not text UTF-8 can carry (a lone "
                               "surrogate)") from None
        env = {**self.spec.env, JOB_ID_VARIABLE: request.id}
        if run.claim_number:
            env[CLAIM_VARIABLE] = str(run.claim_number)
        if run.trace is not None:
            env.update(run.trace.environment())
        elif request.traceparent:  # a trace this worker does not keep still goes on
            env.update(command_environment(request.traceparent, request.tracestate))
        run.outcome = self._run(argv, shell, stdin, on_tick=run.progress, env=env,
                                fields=fields, tail_bytes=self.output_limit,
                                follower=run.follower)
        return self._from_process(run.outcome)

    def _tick_kwargs(self, on_tick, follower=None):
        if follower is None:
            return {"on_tick": on_tick, "tick": self.ctx.progress_interval} if on_tick else {}
        # a followed job: its stream is flushed every tick, progress at its own pace
        every, last = self.ctx.progress_interval, [0.0]

        def tick(elapsed):
            follower.flush()
            if on_tick is not None and elapsed - last[0] >= every:
                last[0] = elapsed
                on_tick(elapsed)
        return {"on_tick": tick, "tick": FOLLOW_INTERVAL, "on_output": follower.add}

    # -- Python tasks past their timeout (called by the process's watchdog)
    def expire(self, running) -> bool:
        """Mark an attempt past its deadline as timed out; False if it ended in time."""
        with _EXPIRY_LOCK:
            if running.timed_out or time.monotonic() <= running.deadline:
                return False
            running.timed_out = True
            return True

    @staticmethod
    def take(running) -> bool:
        """Take an attempt over now (a cancel); False if it already ended or was."""
        with _EXPIRY_LOCK:
            if running.timed_out or running.deadline == float("inf"):
                return False
            running.timed_out = True
            return True

    @staticmethod
    def _ended_in_time(running):
        """An attempt returned: stop watching it, or raise TakenOver if the watchdog
        timed it out first (its job is answered elsewhere)."""
        if running is not None:
            with _EXPIRY_LOCK:
                if running.timed_out:
                    raise TakenOver()
                running.deadline = float("inf")

    def after_cancel(self, running, finish):
        """In a thread of its own, for a job taken over from a task cancelled while it
        ran: status ``cancelled``, no retry."""
        result = self.result(STATUS_CANCELLED, "cancelled (runadmin cancel); the task's "
                                                "worker process is being replaced",
                              attempts=running.attempt, id=running.request.id)
        with job_context(worker=self.ctx.name, function=running.job.function,
                         job_id=running.request.id):
            log.warning("task cancelled (attempt %d)", running.attempt)
            call_hook(self.task, "on_failure", running.request, result)
            finish(self, running, result)

    def after_timeout(self, running, finish):
        """In a thread of its own, for a job taken over from a hung task: the attempts its
        retry policy has left (each watched like the first), then ``finish(result)`` with
        the last attempt's result (``timeout`` if that one hung too: the watchdog then
        calls this again for it, and this call leaves the job to that one)."""
        number, request = running.attempt, running.request
        result = self.result(STATUS_TIMEOUT, f"task ran past its timeout of {self.timeout:g}s; "
                                             "its worker process is being replaced",
                             attempts=number, id=request.id)
        with job_context(worker=self.ctx.name, function=running.job.function, job_id=request.id):
            log.warning("task ran past its timeout of %gs (attempt %d)", self.timeout, number)
            run = Run(running.job, self, running.wire_worker, self.ctx.name)
            run.request, run.attempts, run.started = request, number, running.started
            self.ctx.running[get_ident()] = RunningTask(
                self, running.wire_worker, running.job, request, running.started,
                attempt=number, retry=True)
            retries = self.ctx.retries
            try:  # the process is stopping (it is replaced): the delays are slept anyway
                if retries is not None:
                    result = retries.retry(run, result, wait=_sleep)
            except TakenOver:
                return  # an attempt hung too: the watchdog called us again for it
            finally:
                self.ctx.running.pop(get_ident(), None)
            call_hook(self.task, "on_success" if result.ok else "on_failure", request, result)
            finish(self, running, result)

    @property
    def timeout(self):
        return self.spec.timeout if self.spec else DEFAULT_FUNCTION_TIMEOUT

    def _call_task(self, args, kwargs):
        running = self.ctx.running.get(get_ident())
        if running is not None:
            running.attempt += 1
            running.deadline = time.monotonic() + self.timeout
        try:
            if running is None:
                value = self.task(*args, **kwargs)
            else:
                with reporting(TaskProgress(running.wire_worker, running.job,
                                                self.ctx.stats.progress)):
                    value = self.task(*args, **kwargs)
        except Exception as err:
            self._ended_in_time(running)
            tail = "".join(traceback.format_exception(type(err), err, err.__traceback__))[-2000:]
            log.warning("task raised %s: %s", type(err).__name__, cut(str(err)))
            return self.result(STATUS_FAILED, f"{type(err).__name__}: {err}", stderr=tail)
        self._ended_in_time(running)
        return self._value_result(value)

    def _value_result(self, value):
        """The Result of a value a task returned: ok, or failed if JSON cannot carry it
        (None and bytes are refused: a task says what it did) or it is over the limit."""
        if value is None or isinstance(value, (bytes, bytearray)):
            kind = "None" if value is None else "bytes"
            return self.result(STATUS_FAILED, f"task returned {kind}; a task must return a "
                                               "JSON-serialisable value (str, number, list, dict)")
        size = 0
        if isinstance(value, str) and len(value) * 4 > self.output_limit:
            size = len(value.encode("utf-8", "surrogatepass"))
        if type(value) not in _JSON_SCALARS:
            try:
                size = len(dumps(value))
            except (TypeError, ValueError) as err:
                return self.result(STATUS_FAILED,
                                    f"task returned an unserialisable value: {err}")
        if size > self.output_limit:
            return self.result(STATUS_FAILED, f"task returned {size} bytes of JSON, over its "
                                               f"output_limit ({self.output_limit} bytes)")
        return self.result(STATUS_OK, value=value)

    # -- commands
    def _command(self, kwargs):
        spec = self.spec
        try:
            if spec.command:
                return render_argv(spec.command, kwargs, spec.allow_options), False
            if spec.shell:
                return render_shell(spec.shell, kwargs, spec.allow_options), True
        except TemplateError as err:
            raise Rejected(str(err)) from err
        if spec.raw_shell:
            if set(kwargs) != {"cmd"} or not isinstance(kwargs["cmd"], str):
                raise Rejected("a raw_shell job needs exactly one field, cmd (a string)")
            return kwargs["cmd"], True
        raise Rejected(f"function {self.name} has no command configured")

    def _run(self, argv, shell, stdin, tail_bytes=TAIL_BYTES, on_tick=None, env=None,
             fields=(), head_stdout=False, follower=None):
        """Run the command; ``env`` (default: the function's ``env``) is added to the
        worker's environment. INFO names the job's fields, never their values (a value
        may be a secret); DEBUG shows the command, cut short."""
        if log.isEnabledFor(logging.INFO):
            log.info("running (timeout %ss, fields: %s)", self.spec.timeout,
                     ", ".join(fields) or "none")
            if log.isEnabledFor(logging.DEBUG):  # quote() is not free; this runs per command
                log.debug("command: %s", cut(quote(argv)))
        outcome = self.ctx.runner.run(argv, shell=shell, cwd=self.spec.cwd,
                                      env=self.spec.env if env is None else env,
                                      timeout=self.spec.timeout,
                                      stdin_data=stdin, tail_bytes=tail_bytes,
                                      head_stdout=head_stdout,
                                      **self._tick_kwargs(on_tick, follower))
        if outcome.cancelled:
            raise AbandonJob("command killed because the worker is stopping")
        return outcome

    def _from_process(self, outcome, error=None):
        """The Result of a finished command; ``error`` fails even one that exited 0."""
        self.ctx.stats.processes_killed((outcome.timed_out or outcome.user_cancelled)
                                        + len(outcome.escaped))
        status = (STATUS_CANCELLED if outcome.user_cancelled
                  else STATUS_TIMEOUT if outcome.timed_out
                  else STATUS_OK if outcome.exit_code == 0 and not error else STATUS_FAILED)
        return self.result(status, error or (None if status == STATUS_OK
                                              else outcome.describe()),
                            exit_code=outcome.exit_code, signal=outcome.signal,
                            stdout=_text(outcome.stdout), stderr=_text(outcome.stderr),
                            escaped=list(outcome.escaped) or None,
                            stdout_bytes=outcome.stdout_size, stderr_bytes=outcome.stderr_size,
                            truncated=(outcome.stdout_size > len(outcome.stdout)
                                       or outcome.stderr_size > len(outcome.stderr)))

    # -- raw payloads (other Gearman clients)
    def _raw_attempt(self, run):
        """A raw payload (another Gearman client's): its bytes in, the command's stdout
        out, with the promises of a JSON job: retries, a job id (``$GEARMAN_FRAME_JOB_ID``:
        the unique, else the handle), progress reports; the answer stage sends a failure
        back as text and dead-letters it with its bytes (a raw job may be a background
        one: nobody can tell), so resend restores them exactly."""
        data = run.raw
        if self.task is not None:  # a task runs only on a job it can read
            log.warning("refused a raw (non-envelope) payload")
            raise Rejected(f"function {self.name} is a Python task and takes gearman-frame "
                           f"JSON jobs ({why_raw(data)})")
        if self.spec.stdin != "data":
            log.warning("refused a raw (non-envelope) payload")
            raise Rejected(f"function {self.name} expects a gearman-frame JSON job "
                           f"({why_raw(data)}); configure 'stdin: data' to take raw payloads")
        argv, shell = self._command({})
        env = {**self.spec.env, JOB_ID_VARIABLE: job_id_of(run.job)}
        outcome = run.outcome = self._run(argv, shell, data, tail_bytes=self.output_limit,
                                          head_stdout=True, on_tick=run.progress, env=env)
        if outcome.stdout_size > len(outcome.stdout):
            why = (f"the command's stdout of {outcome.stdout_size} bytes is over "
                   f"output_limit ({self.output_limit} bytes); raise "
                   f"functions.{self.name}.output_limit to get it")
            result = self._from_process(outcome, error=why)
            result.stdout = ""  # what was kept is cut short: no use, and large
            return result
        return self._from_process(outcome)


def _sleep(seconds) -> bool:
    time.sleep(seconds)
    return False


#: Control characters other than TAB, LF and CR: JSON writes each as a 6-byte \u escape.
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _text(data):
    """Output as text when it is UTF-8 (the usual case), else as bytes (base64 on the
    wire); binary output that decodes (NULs, control bytes) goes as bytes too, which is
    what it is, and costs 4/3 of its size in JSON instead of up to 6 times."""
    if len(data) > 4096 and _CONTROL.search(data):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data
