"""Stages that decide whether a job runs: recycling's count, stats, limits, the gate."""
from __future__ import annotations

import logging

from gearman_frame.envelope import STATUS_ERROR, STATUS_REFUSED, looks_like_object, parse_request
from gearman_frame.errors import EnvelopeError
from gearman_frame.signing import REFUSED_REASON
from gearman_frame.wire import AbandonJob, Oversized

from ..gate import Gate
from ..stats import Stats
from .base import Callback, Rejected, Stage

log = logging.getLogger(__name__)


class Recycling(Stage):
    """Counts each job taken (worker.max_jobs recycles the process)."""

    def __init__(self, on_job: Callback):
        self.on_job = on_job

    def before(self, run):
        self.on_job()
        return None


class Accounting(Stage):
    """What runs and what ran (``runadmin inspect``, metrics): begun on arrival, ended
    with the job's status; forgotten if the job is left for gearmand to hand out again."""

    def __init__(self, stats: Stats):
        self.stats = stats

    def before(self, run):
        if not run.batch:  # a batch is begun once, by its handler
            self.stats.begin(run.function, run.job_id, run.handler.timeout)
        return None

    def after(self, run, result):
        # the answer stage (inside this one) has timed the job
        self.stats.end(run.function, result.status, result.duration_s)
        return result

    def unwind(self, run, why):
        if isinstance(why, AbandonJob):
            self.stats.forget()


class Limits(Stage):
    """Reads the job: its envelope, or its raw bytes. Refuses what would grow the
    worker's memory before it is decoded: a payload over worker.max_payload (the wire
    layer dropped its bytes as they came) or an envelope with far more strings than
    worker.max_kwargs allows."""

    def __init__(self, max_kwargs: int, max_payload: int | None, ledger: bool = True):
        self.max_kwargs, self.max_payload = max_kwargs, max_payload
        #: False: this worker has no ledger, so it cannot carry a workflow on.
        self.ledger = ledger

    def before(self, run):
        try:
            run.request, run.raw = self._parse(run.job.data)
        except EnvelopeError as err:
            return run.handler.result(STATUS_ERROR, f"bad job envelope: {err}", attempts=0)
        except Rejected as why:
            return run.handler.result(STATUS_ERROR, str(why), attempts=0)
        if not self.ledger and run.request is not None and run.request.wf is not None:
            log.error("a workflow's step, but this worker has no job ledger (store.url): "
                      "it runs, and its workflow stops after it")
        return None

    def _parse(self, data):
        if isinstance(data, Oversized):
            raise Rejected(f"the job's payload of {data.size} bytes is over worker.max_payload "
                           f"({self.max_payload} bytes); it was not read")
        limit = self.max_kwargs
        if looks_like_object(data) and data.count(b'"') > 4 * limit + 64:
            raise Rejected(f"the job has more strings than {limit} kwargs could need "
                           "(worker.max_kwargs); it was not decoded")
        request, raw = parse_request(data)
        if request is not None and len(request.kwargs) > limit:
            raise Rejected(f"the job has {len(request.kwargs)} kwargs, over worker.max_kwargs "
                           f"({limit})")
        return request, raw


class Batched(Stage):
    """A batch task takes JSON jobs only."""

    def before(self, run):
        if run.batch and run.request is None:
            return run.handler.result(STATUS_ERROR, "a batch task takes JSON jobs, not a raw "
                                                    "payload", attempts=0)
        return None


class Signatures(Stage):
    """The signature gate (with a key configured): a job that is not signed by an accepted
    key, or was seen before, is refused with a reason that tells an attacker nothing;
    never retried. A job left unanswered is released so that it may run when gearmand
    hands it out again."""

    def __init__(self, gate: Gate):
        self.gate = gate

    def before(self, run):
        spec = run.handler.spec
        why = self.gate.why_refused(run.function, run.request, run.job.data,
                                    spec is not None and spec.allow_unsigned)
        if why is None:
            return None
        log.warning("refused: %s", why)
        run.refused = why
        return run.handler.result(STATUS_REFUSED, REFUSED_REASON, attempts=0)

    def unwind(self, run, why):
        if isinstance(why, AbandonJob):
            self.gate.release(run.request)
