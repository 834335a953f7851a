"""The ledger's claim: a job runs only once its id is claimed; a second delivery of a job
that ended is answered with the recorded Result (not run), one running elsewhere waits
for its outcome, and one whose holder died is taken over. The outcome is recorded before
any answer leaves, so a worker killed after the command ended never runs it again."""
from __future__ import annotations

import logging

from gearman_frame.envelope import Result
from gearman_frame.wire import AbandonJob

from ..claims import Claims, Stopping, holder_of_dead_process
from .answer import final
from .base import Run, Stage, TakenOver

log = logging.getLogger(__name__)

#: Seconds between two looks at a job running elsewhere (doubling up to WAIT_MAX).
WAIT_FIRST, WAIT_MAX = 0.1, 1.0


def claim_key(run: Run) -> str:
    """What a job is claimed as: its unique key (our senders set it to the job id; a
    requeued dead letter's has its requeue count, so a requeue is a run of its own),
    else its job id."""
    return run.job.unique or run.job_id


class Claim(Stage):
    """See the module docstring. Raw payloads (no envelope, no job id of ours) are not
    claimed: they run at least once, as before."""

    def __init__(self, claims: Claims):
        self.claims = claims

    def before(self, run: Run) -> Result | None:
        if run.request is None:
            return None
        job_id, pause = claim_key(run), WAIT_FIRST
        while True:
            try:
                claim = self.claims.claim(job_id, run.function, run.worker)
            except Stopping:
                raise AbandonJob("worker stopping while the ledger was unreachable") from None
            if claim.kind == "claimed":
                run.claimed, run.claim_number = True, claim.runs
                if claim.runs > 1:
                    log.warning("taken over (claim %d): its earlier holder died or its "
                                "lease ran out", claim.runs)
                return None
            entry = claim.entry
            assert entry is not None
            if claim.kind == "ended" and entry.result is not None:
                log.info("answered from the ledger: it ran already (%s, on %s)",
                         entry.status, entry.host)
                result = Result.decode(entry.result)
                run.encoded, run.replayed = (result, entry.result), True
                return result
            if holder_of_dead_process(entry.holder):
                log.warning("its holder %s died: taking it over", entry.holder)
                self.claims.release_dead(job_id, entry.holder or "")
                continue
            if run.job.gone():
                raise AbandonJob("gearmand went away while the job ran elsewhere")
            if pause == WAIT_FIRST:
                log.info("running on %s (%s): waiting for its outcome", entry.host,
                         entry.worker)
            if self.claims.stopping.wait(pause):
                raise AbandonJob("worker stopping while the job ran elsewhere")
            pause = min(pause * 2, WAIT_MAX)

    def after(self, run: Run, result: Result) -> Result:
        if not run.claimed:
            return result
        if run.job.gone() and not result.ok:
            # its connection went away (the worker kills such a command): gearmand hands
            # the job out again, and that delivery must run it, not read this outcome
            self.claims.release(claim_key(run))
            run.claimed = False
            return result
        result, text = final(run, result)
        try:
            if not self.claims.finish(claim_key(run), result.status, text):
                log.error("its claim was lost (the lease ran out while it ran): another "
                          "worker took it over")
        except Stopping:
            log.error("worker stopping while the ledger was unreachable: the outcome is "
                      "not recorded")
        run.claimed = False
        return result

    def unwind(self, run: Run, why: BaseException) -> None:
        if run.claimed and not isinstance(why, TakenOver):
            self.claims.release(claim_key(run))
            run.claimed = False
