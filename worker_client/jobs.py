"""One Gearman job, from payload to answer: decode, run (with retries), report.

A :class:`FunctionHandler` serves one function. Whatever happens inside a job (a bad
payload, a missing template field, a task that raises or returns the wrong type, a
command that fails or hangs) becomes a result for that job and never escapes the job
loop. Success goes back as WORK_COMPLETE; a final failure goes back as WORK_DATA carrying
the same result object, then WORK_FAIL.
"""
from __future__ import annotations

import logging
import re
import socket
import time
import traceback
from dataclasses import dataclass, field
from threading import Event, Lock, get_ident

from gearman_frame.config import (DEFAULT_FUNCTION_TIMEOUT, DEFAULT_MAX_KWARGS,
                                  DEFAULT_OUTPUT_LIMIT, DEFAULT_PROGRESS_INTERVAL)
from gearman_frame.envelope import (STATUS_CANCELLED, STATUS_ERROR, STATUS_FAILED, STATUS_OK,
                                    STATUS_REFUSED,
                                    STATUS_TIMEOUT, Result, dumps, looks_like_object,
                                    parse_request, why_raw)
from gearman_frame.errors import EnvelopeError
from gearman_frame.logs import cut, job_context
from gearman_frame.tasks import reporting
from gearman_frame.templates import TemplateError, render_argv, render_shell
from gearman_frame.wire import AbandonJob, JobFailed, Oversized, connection_gone

from .stats import Stats
from .veryeasyprocess import TAIL_BYTES, Runner, quote

log = logging.getLogger(__name__)

HOST = socket.gethostname()
#: Environment variable giving a command its job id: the key to make a command idempotent
#: (a job may run again after a crash; see the README's Guarantees).
JOB_ID_VARIABLE = "GEARMAN_FRAME_JOB_ID"


_JSON_SCALARS = (str, int, float, bool)
#: Seconds a thread waits before leaving a job unanswered that it could neither run nor
#: dead-letter: gearmand hands the job out again at once.
ABANDON_PAUSE = 1.0


class Rejected(Exception):
    """Raised when a job cannot run at all (bad fields): it fails without any attempt."""


class TakenOver(Exception):
    """Raised in a task's thread when its attempt returns after the watchdog timed it out:
    the job is answered elsewhere, and nothing more is done for it here."""


@dataclass
class RunningTask:
    """A Python task's attempt in progress, watched for its timeout by the process's
    watchdog (WorkerPool): a thread cannot be killed, so past its deadline the job is
    answered from outside and the process is replaced."""

    handler: "FunctionHandler"
    wire_worker: object
    job: object
    request: object
    started: float
    deadline: float = float("inf")
    attempt: int = 0
    timed_out: bool = False
    #: run by after_timeout's thread (the job was taken over), not the serving thread
    retry: bool = False


#: Decides, once, whether an attempt ended in time or was timed out by the watchdog.
_EXPIRY_LOCK = Lock()


@dataclass
class WorkerContext:
    """What every handler of one worker process shares."""

    name: str
    runner: Runner
    stopping: Event = field(default_factory=Event)
    dead_letter: object | None = None
    #: publish(job, request, result, started_at) -> bool: a result to its channel.
    publish: object | None = None
    #: notice(job, request): tell a job's channel that a run began.
    notice: object | None = None
    progress_interval: float = DEFAULT_PROGRESS_INTERVAL
    max_kwargs: int = DEFAULT_MAX_KWARGS
    max_payload: int | None = None
    #: The signature gate (None: signing is off, every job is taken).
    gate: object | None = None
    #: Called as each job is taken (recycling counts them).
    on_job: object | None = None
    #: Python tasks running now, by thread id (the watchdog's view).
    running: dict = field(default_factory=dict)
    #: What runs and what ran (`runadmin inspect`).
    stats: Stats = field(default_factory=Stats)


def job_id_of(job) -> str:
    """A job's id as logs, results and commands see it: its unique key, or gearmand's
    handle for a job that came without one (sent without a unique, or grabbed with
    GRAB_JOB from a server that has no GRAB_JOB_UNIQ)."""
    if job.unique:
        return job.unique
    handle = job.handle
    return handle.decode("utf-8", "replace") if isinstance(handle, (bytes, bytearray)) \
        else str(handle)


class FunctionHandler:
    """Serves one Gearman function, configured (command/shell) or a Python @task."""

    def __init__(self, name, spec, task, context):
        self.name = name
        self.spec = spec
        self.task = task
        self.ctx = context

    # -- entry point called by the wire worker
    def __call__(self, wire_worker, job):
        job_id = job_id_of(job)
        with job_context(worker=wire_worker.worker_client_id or self.ctx.name,
                         function=job.task, job_id=job_id):
            started = time.monotonic()
            request = None
            if self.ctx.on_job is not None:
                self.ctx.on_job()
            stats = self.ctx.stats
            stats.begin(job.task, job_id, self.timeout)
            try:
                request, raw = self._parse(job.data)
                why = self._why_refused(job, request)
                if why is not None:
                    return self._refuse(job, request, why, started)
                if request is None:
                    return self._raw(wire_worker, job, raw, started)
                if request.reply_to and self.ctx.notice and self.task is None:
                    self.ctx.notice(job, request)
                if self.task is not None:
                    self.ctx.running[get_ident()] = RunningTask(self, wire_worker, job,
                                                                request, started)
                result = self._serve(wire_worker, job, request)
                if self.task is None and connection_gone(job.connection):
                    raise AbandonJob(f"gearmand {job.connection.address} went away while "
                                     "it ran: no result here, gearmand hands the job to "
                                     "another worker")
            except AbandonJob:
                stats.forget()
                if self.ctx.gate is not None:
                    self.ctx.gate.release(request)
                raise
            except TakenOver:
                return JobFailed(b"")  # never sent: the job was answered elsewhere
            except EnvelopeError as err:
                result = self._result(STATUS_ERROR, f"bad job envelope: {err}", attempts=0)
            except Rejected as why:
                result = self._result(STATUS_ERROR, str(why), attempts=0)
            except Exception as err:  # the system's (EMFILE ...) or ours: still a result
                log.exception("job could not be handled")
                result = self._result(STATUS_ERROR, f"worker error: {type(err).__name__}: "
                                                    f"{err}", attempts=0)
            finally:
                if self.task is not None:
                    self.ctx.running.pop(get_ident(), None)
            if result.id is None:
                result.id = request.id if request is not None else job_id_of(job)
            return self._final(job, request, result, started)

    def _why_refused(self, job, request):
        gate = self.ctx.gate
        if gate is None:
            return None
        return gate.why_refused(job.task, request, job.data,
                                self.spec is not None and self.spec.allow_unsigned)

    def _refuse(self, job, request, why, started):
        """Answer a job the gate refused: status ``refused`` and a reason that tells an
        attacker nothing; never retried. Only a job whose signature was good but whose
        time had passed (it waited in a queue too long) is dead-lettered, so an admin can
        resend it: the rest are not ours to keep."""
        from gearman_frame.signing import EXPIRED, REFUSED_REASON  # only with a key set
        log.warning("refused: %s", why)
        if request is None:
            self.ctx.stats.end(job.task, STATUS_REFUSED, time.monotonic() - started)
            return JobFailed(f"refused: {REFUSED_REASON}".encode())
        result = self._result(STATUS_REFUSED, REFUSED_REASON, attempts=0, id=request.id)
        if why == EXPIRED and request.background:
            return self._final(job, request, result, started)
        result.duration_s = round(time.monotonic() - started, 6)
        self.ctx.stats.end(job.task, STATUS_REFUSED, result.duration_s)
        return JobFailed(result.encode())

    def _parse(self, data):
        """The request (or the raw payload), refusing what would grow the worker's memory
        before it is decoded: a payload over worker.max_payload (the wire layer dropped
        its bytes as they came) or an envelope with far more strings than kwargs allowed."""
        if isinstance(data, Oversized):
            raise Rejected(f"the job's payload of {data.size} bytes is over worker.max_payload "
                           f"({self.ctx.max_payload} bytes); it was not read")
        limit = self.ctx.max_kwargs
        if looks_like_object(data) and data.count(b'"') > 4 * limit + 64:
            raise Rejected(f"the job has more strings than {limit} kwargs could need "
                           "(worker.max_kwargs); it was not decoded")
        request, raw = parse_request(data)
        if request is not None and len(request.kwargs) > limit:
            raise Rejected(f"the job has {len(request.kwargs)} kwargs, over worker.max_kwargs "
                           f"({limit})")
        return request, raw

    @property
    def output_limit(self):
        return self.spec.output_limit if self.spec else DEFAULT_OUTPUT_LIMIT

    def _serve(self, wire_worker, job, request):
        progress = (_Progress(wire_worker, job, self.spec.timeout)
                    if self.task is None else None)  # only commands report progress
        follower = None
        if request.follow and self.task is None:
            from .follow import Follower  # only for a sender that follows the output
            follower = Follower(wire_worker, job)
        result = self._with_retries(lambda: self._attempt(request, progress, follower),
                                    request)
        if follower is not None:
            follower.flush()
        self._hook("on_success" if result.ok else "on_failure", request, result)
        return result

    def _hook(self, name, request, result):
        """Call a task's ``name`` hook with the job (its Request: id, args, kwargs) and
        the result; a hook that raises is logged and changes nothing."""
        hook = getattr(self.task, name, None)
        if hook is None:
            return
        log.info("%s hook: %s", name, getattr(hook, "__name__", hook))
        try:
            hook(request, result)
        except Exception as err:  # a hook's failure is not the job's
            log.error("%s hook %s raised %s: %s (the job's outcome stands)", name,
                      getattr(hook, "__name__", hook), type(err).__name__, cut(str(err)))

    def _final(self, job, request, result, started):
        """Answer the job with its result; a background job that failed (or one whose
        envelope could not be read, so nobody knows) is dead-lettered first."""
        result.duration_s = round(time.monotonic() - started, 6)
        result, encoded = self._encoded(result)
        self.ctx.stats.end(job.task, result.status, result.duration_s)
        if request is not None and request.reply_to and self.ctx.publish:
            if not self.ctx.publish(job, request, result, time.time() - result.duration_s):
                self.ctx.stopping.wait(ABANDON_PAUSE)  # unanswered: gearmand keeps the job
                raise AbandonJob("neither a server nor the spool took its result")
        if result.ok:
            log.info("done: ok after %d attempt(s) in %.3fs", result.attempts, result.duration_s)
            return encoded
        log.warning("failed: %s (%s) after %d attempt(s)", result.status, result.error,
                    result.attempts)
        background = True if request is None else request.background
        if background and self.ctx.dead_letter and result.status != STATUS_CANCELLED:
            if not self.ctx.dead_letter(job, result):
                # Neither gearmand nor the disk took it: unanswered, the job stays with
                # gearmand (bounded by its --job-retries), never dropped; after a pause,
                # so a worker that can do nothing (out of descriptors) does not spin on it.
                self.ctx.stopping.wait(ABANDON_PAUSE)
                raise AbandonJob("neither a server nor the spool took its dead letter")
        return JobFailed(encoded)

    def _encoded(self, result):
        """``(result, its JSON)``; a result JSON cannot carry (a lone surrogate from a
        hostile job) becomes an error result that can."""
        try:
            return result, result.encode()
        except ValueError as err:
            safe = self._result(STATUS_ERROR, f"the result could not be encoded: {err}",
                                attempts=result.attempts, duration_s=result.duration_s,
                                id=_printable(result.id))
            return safe, safe.encode()

    def _result(self, status, error=None, **fields):
        return Result(status=status, error=error, worker=self.ctx.name, host=HOST, **fields)

    # -- retries: the one place that decides to try again
    def _with_retries(self, attempt, request=None, first=1):
        policy = self.spec.retry if self.spec else None
        total = policy.attempts if policy else 1
        number = first - 1
        while True:
            number += 1
            if total > 1:
                log.info("attempt %d of %d", number, total)
            result = attempt()
            result.attempts = number
            if (result.ok or policy is None or not policy.should_retry(number)
                    or result.status == STATUS_CANCELLED):
                return result
            delay = policy.delay_after(number)
            log.warning("attempt %d of %d failed (%s); retrying in %.2fs", number, total,
                        result.error, delay)
            self.ctx.stats.count(self.name, "retried")
            self.ctx.stats.attempt(number + 1)
            self._hook("on_retry", request, result)
            if self.ctx.stopping.wait(delay):
                raise AbandonJob("worker stopping between attempts")

    def _attempt(self, request, progress=None, follower=None):
        if self.task is not None:
            return self._call_task(request.args, request.kwargs)
        argv, shell = self._command(request.kwargs)
        stdin = request.args[0] if self.spec.stdin == "data" and request.args else None
        if isinstance(stdin, str):
            stdin = stdin.encode("utf-8")
        env = {**self.spec.env, JOB_ID_VARIABLE: request.id}
        return self._from_process(self._run(argv, shell, stdin, on_tick=progress, env=env,
                                            fields=request.kwargs,
                                            tail_bytes=self.output_limit,
                                            follower=follower))

    def _tick_kwargs(self, on_tick, follower=None):
        if follower is None:
            return {"on_tick": on_tick, "tick": self.ctx.progress_interval} if on_tick else {}
        # a followed job: its stream is flushed every tick, progress at its own pace
        from .follow import INTERVAL
        every, last = self.ctx.progress_interval, [0.0]

        def tick(elapsed):
            follower.flush()
            if on_tick is not None and elapsed - last[0] >= every:
                last[0] = elapsed
                on_tick(elapsed)
        return {"on_tick": tick, "tick": INTERVAL, "on_output": follower.add}

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
        result = self._result(STATUS_CANCELLED, "cancelled (runadmin cancel); the task's "
                                                "worker process is being replaced",
                              attempts=running.attempt, id=running.request.id)
        with job_context(worker=self.ctx.name, function=running.job.task,
                         job_id=running.request.id):
            log.warning("task cancelled (attempt %d)", running.attempt)
            self._hook("on_failure", running.request, result)
            finish(self, running, result)

    def after_timeout(self, running, finish):
        """In a thread of its own, for a job taken over from a hung task: the attempts its
        retry policy has left (each watched like the first), then ``finish(result)`` with
        the last attempt's result (``timeout`` if that one hung too: the watchdog then
        calls this again for it, and this call leaves the job to that one)."""
        policy = self.spec.retry if self.spec else None
        number, request = running.attempt, running.request
        result = self._result(STATUS_TIMEOUT, f"task ran past its timeout of {self.timeout:g}s; "
                                              "its worker process is being replaced",
                              attempts=number, id=request.id)
        with job_context(worker=self.ctx.name, function=running.job.task, job_id=request.id):
            log.warning("task ran past its timeout of %gs (attempt %d)", self.timeout, number)
            if policy is not None and policy.should_retry(number):
                self._hook("on_retry", request, result)
                time.sleep(policy.delay_after(number))
                self.ctx.running[get_ident()] = RunningTask(
                    self, running.wire_worker, running.job, request, running.started,
                    attempt=number, retry=True)
                try:
                    result = self._with_retries(
                        lambda: self._call_task(request.args, request.kwargs), request,
                        first=number + 1)
                except TakenOver:
                    return  # this attempt hung too: the watchdog called us again for it
                finally:
                    self.ctx.running.pop(get_ident(), None)
            self._hook("on_success" if result.ok else "on_failure", request, result)
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
                with reporting(_TaskProgress(running.wire_worker, running.job)):
                    value = self.task(*args, **kwargs)
        except Exception as err:
            self._ended_in_time(running)
            tail = "".join(traceback.format_exception(type(err), err, err.__traceback__))[-2000:]
            log.warning("task raised %s: %s", type(err).__name__, cut(str(err)))
            return self._result(STATUS_FAILED, f"{type(err).__name__}: {err}", stderr=tail)
        self._ended_in_time(running)
        return self._value_result(value)

    def _value_result(self, value):
        """The Result of a value a task returned: ok, or failed if JSON cannot carry it
        (None and bytes are refused: a task says what it did) or it is over the limit."""
        if value is None or isinstance(value, (bytes, bytearray)):
            kind = "None" if value is None else "bytes"
            return self._result(STATUS_FAILED, f"task returned {kind}; a task must return a "
                                               "JSON-serialisable value (str, number, list, dict)")
        size = 0
        if isinstance(value, str) and len(value) * 4 > self.output_limit:
            size = len(value.encode("utf-8", "surrogatepass"))
        if type(value) not in _JSON_SCALARS:
            try:
                size = len(dumps(value))
            except (TypeError, ValueError) as err:
                return self._result(STATUS_FAILED,
                                    f"task returned an unserialisable value: {err}")
        if size > self.output_limit:
            return self._result(STATUS_FAILED, f"task returned {size} bytes of JSON, over its "
                                               f"output_limit ({self.output_limit} bytes)")
        return self._result(STATUS_OK, value=value)

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
        return self._result(status, error or (None if status == STATUS_OK
                                              else outcome.describe()),
                            exit_code=outcome.exit_code, signal=outcome.signal,
                            stdout=_text(outcome.stdout), stderr=_text(outcome.stderr),
                            escaped=list(outcome.escaped) or None,
                            stdout_bytes=outcome.stdout_size, stderr_bytes=outcome.stderr_size,
                            truncated=(outcome.stdout_size > len(outcome.stdout)
                                       or outcome.stderr_size > len(outcome.stderr)))

    # -- raw payloads (other Gearman clients)
    def _raw(self, wire_worker, job, data, started):
        """A raw payload (another Gearman client's): its bytes in, the command's stdout
        out, with the promises of a JSON job: retries, a job id (``$GEARMAN_FRAME_JOB_ID``:
        the unique, else the handle), progress reports; a failure goes back as text, and
        (a raw job may be a background one: nobody can tell) is dead-lettered with its
        bytes, so resend restores them exactly."""
        if self.task is not None:
            result = self._call_task((data,), {})
            if result.ok:
                self.ctx.stats.end(job.task, STATUS_OK, time.monotonic() - started)
                return dumps(result.value)
            return self._raw_failed(job, started, result, result.error.encode("utf-8",
                                                                              "replace"))
        if self.spec.stdin != "data":
            log.warning("refused a raw (non-envelope) payload")
            why = (f"function {self.name} expects a gearman-frame JSON job ({why_raw(data)}); "
                   "configure 'stdin: data' to take raw payloads")
            return self._raw_failed(job, started, self._result(STATUS_ERROR, why, attempts=0))
        try:
            argv, shell = self._command({})
        except Rejected as err:
            return self._raw_failed(job, started, self._result(STATUS_ERROR, str(err),
                                                               attempts=0))
        env = {**self.spec.env, JOB_ID_VARIABLE: job_id_of(job)}
        progress = _Progress(wire_worker, job, self.spec.timeout)
        runs = []

        def attempt():
            outcome = self._run(argv, shell, data, tail_bytes=self.output_limit,
                                head_stdout=True, on_tick=progress, env=env)
            runs.append(outcome)
            if outcome.stdout_size > len(outcome.stdout):
                why = (f"the command's stdout of {outcome.stdout_size} bytes is over "
                       f"output_limit ({self.output_limit} bytes); raise "
                       f"functions.{self.name}.output_limit to get it")
                result = self._from_process(outcome, error=why)
                result.stdout = ""  # what was kept is cut short: no use, and large
                return result
            return self._from_process(outcome)
        result = self._with_retries(attempt)
        outcome = runs[-1]
        if result.ok:
            log.info("done: raw job ok after %d attempt(s) in %.3fs", result.attempts,
                     outcome.duration_s)
            self.ctx.stats.end(job.task, STATUS_OK, time.monotonic() - started)
            return outcome.stdout
        text = None  # over output_limit: the result's error says so
        if outcome.stdout_size <= len(outcome.stdout):
            text = outcome.stderr[-4000:] + f"\n{outcome.describe()}\n".encode()
        return self._raw_failed(job, started, result, text)

    def _raw_failed(self, job, started, result, text=None):
        """Fail a raw job: dead-lettered like any job of unknown kind, answered with plain
        text (``text``, else the result's error) that a foreign client can show."""
        answer = self._final(job, None, result, started)
        answer.data = text if text is not None else (result.error or "").encode("utf-8",
                                                                               "replace")
        return answer


class _TaskProgress:
    """A task's ``progress(done, total)``: WORK_STATUS, at most one per PACE seconds but
    the last (done == total) always."""

    PACE = 0.1

    def __init__(self, wire_worker, job):
        self.wire_worker, self.job = wire_worker, job
        self.sent_at = float("-inf")

    def __call__(self, done, total):
        now = time.monotonic()
        if now - self.sent_at >= self.PACE or done >= total:
            self.sent_at = now
            self.wire_worker.report_progress(self.job, done, total)


class _Progress:
    """Sends WORK_STATUS (seconds elapsed of the timeout) while a long command runs."""

    def __init__(self, wire_worker, job, timeout):
        self.wire_worker = wire_worker
        self.job = job
        self.timeout = int(timeout or 0)
        self.lost = False

    def __call__(self, elapsed):
        if not self.lost:  # once its server is gone, the rest would fail the same way
            self.lost = not self.wire_worker.report_progress(self.job, int(elapsed),
                                                             self.timeout)


def _printable(text):
    """``text`` with anything UTF-8 cannot carry escaped (None stays None)."""
    return None if text is None else str(text).encode("utf-8", "backslashreplace").decode()


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
