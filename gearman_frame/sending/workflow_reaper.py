"""Workflows whose next step went missing, carried on by the reaper.

The worker that ends a step sends the next one; a gearmand host lost for good can take
with it a step that worker queued only in its spool, or the step whose outcome was
recorded but whose worker died before it sent what follows (gearmand would have handed
that step out again, had it lived). Each reaper pass looks at the running workflows:

- a stage whose steps all ended ok, followed by steps the ledger has never seen (neither
  claimed nor recorded as sent), is carried on: those steps are recorded as sent to no
  server, due when the stage ended, and the job reaper sends them after
  ``store.requeue_after`` like any job its server lost;
- a step that failed for good ends its workflow failed (and records its on-failure step);
- a workflow whose last stage ended ok ends ok.

Step ids are the same whoever sends them, and each is claimed once: a step the reaper
sends while its first copy still waits somewhere runs once.
"""
from __future__ import annotations

import logging
import time

from ..envelope import STATUS_OK
from ..ledger.flows import FAILED, OK, Flows, Workflow
from ..workflows.steps import (failure_id, following, on_failure, result_dict,
                               stage_outcome, step_id)

log = logging.getLogger(__name__)

#: Running workflows looked at per pass (the oldest first).
LIMIT = 1000


def carry_on(flows: Flows, patience: float) -> int:
    """One pass over the running workflows older than ``patience`` seconds; how many steps
    it recorded to be sent."""
    recorded = 0
    now = time.time()
    for workflow in flows.recent(LIMIT, running=True):
        if now - workflow.created >= patience:
            recorded += _one(flows, workflow)
    return recorded


def _one(flows: Flows, workflow: Workflow) -> int:
    stages = workflow.plan.get("stages") or []
    fail = workflow.plan.get("on_failure")
    ids = [[step_id(workflow.id, k, i) for i in range(len(stage))]
           for k, stage in enumerate(stages)]
    entries = flows.outcomes([i for stage in ids for i in stage] + [failure_id(workflow.id)])
    for k, stage_ids in enumerate(ids):
        found = [entries.get(i) for i in stage_ids]
        failed = next((e for e in found if e is not None and e.state == "ended"
                       and e.status != STATUS_OK), None)
        if failed is not None:
            if flows.end(workflow.id, FAILED, failed.id):
                log.warning("reaper: workflow %s failed at %s", workflow.id, failed.id)
            if fail and failure_id(workflow.id) not in entries:
                return _record(flows, [on_failure(workflow.id, fail,
                                                  result_dict(failed.result))],
                               failed.ended)
            return 0
        if all(e is not None and e.state == "ended" for e in found):
            continue
        if k == 0:
            return 0  # the sender's: its jobs are the job reaper's
        missing = [n for n, e in enumerate(found) if e is None]
        before = [entries[i] for i in ids[k - 1]]
        steps = following(workflow.id, stages[k:], fail, k,
                          stage_outcome([e.result for e in before]))
        return _record(flows, [steps[n] for n in missing],
                       max(e.ended or 0.0 for e in before))
    last = ids[-1]
    end = last[0] if len(last) == 1 else f"{workflow.id}.{len(ids) - 1}"
    if flows.end(workflow.id, OK, end):
        log.warning("reaper: workflow %s had ended ok: marked so", workflow.id)
    return 0


def _record(flows: Flows, steps: list, due: float | None) -> int:
    """Record ``steps`` (``(function, Request)``) as sent to no server, due at ``due``,
    unless the ledger has them already (sent by a worker, waiting for the job reaper)."""
    rows: list[tuple[str, str, str | None, bytes, float]] = [
        (request.id, function, None, request.encode(), due or time.time())
        for function, request in steps]
    added = flows.ledger.record_missing(rows)
    if added:
        log.warning("reaper: %d step(s) of workflow %s were never sent on: recorded to be "
                    "sent", added, rows[0][0].rsplit(".", 2)[0])
    return added
