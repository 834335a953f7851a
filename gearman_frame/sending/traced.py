"""The sender's span for each job it sends (``send FUNCTION``): it starts as the job is
prepared, its context goes into the envelope (``traceparent``), and it ends when the job
is queued (background) or answered (foreground)."""
from __future__ import annotations

from typing import Any

from .dispatch import Job, Outcome


def begin_send(tracing: Any, job: Job) -> Any:
    """Start ``job``'s send span and put its context in the job; None for a job whose
    trace is not kept (it carries an unsampled context, and costs no span)."""
    if not tracing.sample_new():
        job.trace = tracing.unsampled()
        return None
    span = tracing.start(f"send {job.function}",
                         kind="PRODUCER" if job.background else "CLIENT",
                         **{"messaging.system": "gearman",
                            "gearman_frame.function": job.function,
                            "gearman_frame.job_id": job.id})
    job.trace = tracing.carrier(span)
    return span


def end_send(tracing: Any, span: Any, outcome: Outcome, result: Any = None) -> None:
    """End a send span with how the job went: queued (and where), answered (``result``,
    a foreground job's Result), or not sent (an error status)."""
    if outcome.error is not None:
        tracing.end(span, error=str(outcome.error),
                    **{"gearman_frame.error": type(outcome.error).__name__})
    else:
        tracing.end(span, result, **{"gearman_frame.server": outcome.server})
