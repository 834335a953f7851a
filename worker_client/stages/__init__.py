"""Every concern of a job as a stage (see ``base``); ``build`` wires them for a pool."""
from __future__ import annotations

from .advance import Advance
from .admission import Accounting, Batched, Limits, Recycling, Signatures
from .answer import Answer, encoded
from .claim import Claim
from .base import Pipeline, Rejected, Run, Stage, TakenOver, job_id_of
from .slot import Slot
from .running import Hooks, LostConnection, Output, Retries, StartNotice, Watchdog
from .trace import Trace

__all__ = ["Pipeline", "Rejected", "Run", "Stage", "TakenOver", "job_id_of", "build",
           "encoded", "Retries"]


def build(ctx) -> Pipeline:
    """The stages of a worker process, outermost first (``ctx``: its WorkerContext); sets
    ``ctx.pipeline`` and ``ctx.retries``. A stage a setting turns off is not there."""
    retries = Retries(lambda run: ctx.pipeline.attempt(run), ctx.stats, ctx.stopping)
    stages: list[Stage] = []
    if ctx.on_job is not None:
        stages.append(Recycling(ctx.on_job))
    if ctx.caps is not None:  # first: a job waiting for its start is not running yet
        stages.append(Slot())
    stages += [Accounting(ctx.stats), Answer(ctx.publish, ctx.dead_letter, ctx.stopping),
               Limits(ctx.max_kwargs, ctx.max_payload, ctx.claims is not None), Batched()]
    if ctx.gate is not None:
        stages.append(Signatures(ctx.gate))
    stages.append(LostConnection())
    if ctx.tracing is not None:  # after the signature: a trace context is trusted then
        stages.append(Trace(ctx.tracing))
    if ctx.claims is not None:  # inside LostConnection: an outcome is recorded first
        if ctx.send_step is not None:  # outside the claim: after the outcome's record
            stages.append(Advance(ctx.claims, ctx.send_step))
        stages.append(Claim(ctx.claims))
    if ctx.notice is not None:
        stages.append(StartNotice(ctx.notice))
    stages += [Watchdog(ctx.running), Hooks(), Output(ctx.stats), retries]
    ctx.pipeline, ctx.retries = Pipeline(stages), retries
    return ctx.pipeline
