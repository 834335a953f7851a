"""The worker's spans of a traced job: ``queued FUNCTION`` (from the envelope's time to
the worker's start), ``run FUNCTION`` (the whole job: function, job id, worker, attempts,
exit code, status; the first attempt runs in it) and a ``retry N`` child per retry; the
command gets the context of the span it runs in as TRACEPARENT. They continue the
sender's trace (the envelope's ``traceparent``) when the sender kept it; a job sent
untraced starts a trace of its own, sampled by this worker's ratio. A trace not kept
makes no span at all."""
from __future__ import annotations

import time
from typing import Any, Callable

from gearman_frame.envelope import Result

from .base import Run, Stage


class JobTrace:
    """One job's run span, and its attempts."""

    __slots__ = ("tracing", "span", "attempt_span")

    def __init__(self, tracing: Any, span: Any):
        self.tracing, self.span = tracing, span
        self.attempt_span: Any = None

    def attempt(self, run: Run, call: Callable[[Run], Result]) -> Result:
        """Run one attempt (``call(run)``): the first in the run span itself, a retry in
        a child span of its own; the span is the current one while it runs (a Python
        task's own spans nest in it)."""
        number = run.attempts + 1
        if number == 1:
            with self.tracing.current(self.span):
                return call(run)
        span = self.attempt_span = self.tracing.start(
            f"retry {number - 1}", self.span, **{"gearman_frame.attempt": number})
        result = None
        try:
            with self.tracing.current(span):
                result = call(run)
            return result
        finally:
            self.attempt_span = None
            self.tracing.end(span, result)

    def environment(self) -> dict[str, str]:
        """TRACEPARENT (and TRACESTATE) for the command of the attempt running now."""
        return self.tracing.environment(self.attempt_span or self.span)


class Trace(Stage):
    """Opens a traced job's spans; ends them with its outcome (see the module)."""

    def __init__(self, tracing: Any):
        self.tracing = tracing

    def before(self, run):
        request = run.request
        if request is None:  # a raw payload carries no trace context
            return None
        tracing = self.tracing
        if not (tracing.sampled(request.traceparent) if request.traceparent
                else tracing.sample_new()):
            return None  # not kept: no span (the command still gets the sender's context)
        parent = tracing.parent(request.traceparent, request.tracestate)
        queued_since = request.at or request.sent_at
        if queued_since and queued_since < time.time():
            tracing.end(tracing.start(f"queued {run.function}", parent, "INTERNAL",
                                      start_time=queued_since,
                                      **{"gearman_frame.job_id": request.id}))
        # each attribute costs the SDK a check: the ones a search needs, once
        run.trace = JobTrace(tracing, tracing.start(
            f"run {run.function}", parent, "CONSUMER",
            **{"gearman_frame.function": run.function, "gearman_frame.job_id": request.id,
               "gearman_frame.worker": run.worker, "messaging.system": "gearman"}))
        return None

    def after(self, run, result):
        if run.trace is not None:
            self.tracing.end(run.trace.span, result,
                             **{"gearman_frame.claim": run.claim_number or None,
                                "gearman_frame.replayed": run.replayed or None})
            run.trace = None
        return result

    def unwind(self, run, why):
        if run.trace is not None:
            self.tracing.end(run.trace.span, **{"gearman_frame.left": type(why).__name__})
            run.trace = None
