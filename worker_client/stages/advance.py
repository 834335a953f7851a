"""A workflow's next step, sent by the worker that ended this one (there is no
coordinator). It runs outside the claim stage, after the outcome is recorded, and also
for an outcome read back from the ledger: a worker killed between the two left the job
with gearmand, and its next delivery sends what follows (a step sent twice has one job
id, claimed once: it runs once). What a lost server took with it, the reaper sends on
(gearman_frame.sending.workflow_reaper).

Ok: a single step hands its outcome to the next stage; a group member joins (a counter
in the ledger) and the member that completes the join hands the group's outcomes, in
order, to the next stage. No next stage: the workflow ends ok. A step that failed for
good ends the workflow failed and sends its on-failure step; later steps never run."""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

from gearman_frame.config.defaults import RESERVED_PREFIX
from gearman_frame.envelope import Request, Result
from gearman_frame.ledger.flows import FAILED, OK, Flows
from gearman_frame.workflows.steps import following, on_failure, stage_outcome, step_id
from gearman_frame.wire import AbandonJob

from ..claims import Claims, Stopping
from ..outgoing import KEPT
from .base import Run, Stage

log = logging.getLogger(__name__)


class Advance(Stage):
    """See the module docstring."""

    def __init__(self, claims: Claims, send: Callable[[str, Request], tuple[Any, bytes]]):
        self.claims, self.send = claims, send

    def after(self, run: Run, result: Result) -> Result:
        request = run.request
        if request is None or request.wf is None or run.encoded is None:
            return result  # not a step, or its outcome is not recorded (it runs again)
        try:
            self._advance(run, request.wf, run.encoded[0], run.encoded[1])
        except Stopping:
            raise AbandonJob("worker stopping while the ledger was unreachable: the "
                             "workflow goes on from this step's next delivery") from None
        except (KeyError, TypeError, ValueError) as err:
            log.error("the workflow cannot go on from this step (%s: a malformed wf field, "
                      "or a member's outcome pruned): it stops here", err)
        return result

    def _flows(self, action: Callable[[Flows], Any]) -> Any:
        return self.claims.call(lambda ledger: action(Flows(ledger)))

    def _advance(self, run: Run, wf: dict, result: Result, recorded: bytes) -> None:
        workflow = wf["id"]
        if wf.get("failure"):
            return
        stage, index, size = int(wf["stage"]), int(wf["index"]), int(wf["size"])
        if not result.ok:
            if self._flows(lambda flows: flows.end(workflow, FAILED, run.job_id)):
                log.warning("workflow %s failed at this step: its later steps never run",
                            workflow)
            if wf.get("fail"):
                self._send(*on_failure(workflow, wf["fail"], result.to_dict()))
            return
        if size > 1:
            if self._flows(lambda flows: flows.join(workflow, stage, index)) < size:
                return
            ids = [step_id(workflow, stage, i) for i in range(size)]
            entries = self._flows(lambda flows: flows.outcomes(ids))
            prev = stage_outcome([entries[i].result for i in ids])
        else:
            prev = stage_outcome([recorded])
        rest = wf["rest"]
        if not rest:
            end = run.job_id if size == 1 else f"{workflow}.{stage}"
            if self._flows(lambda flows: flows.end(workflow, OK, end)):
                log.info("workflow %s ended ok", workflow)
            return
        traced: dict[str, str] = {}
        if run.trace is not None:  # the next steps continue this one's trace
            traced = run.trace.environment()
        elif run.request is not None and run.request.traceparent:
            traced = {"TRACEPARENT": run.request.traceparent,
                      "TRACESTATE": run.request.tracestate or ""}
        for function, request in following(workflow, rest, wf.get("fail"), stage + 1, prev,
                                           traced):
            self._send(function, request)

    def _send(self, function: str, request: Request) -> None:
        if not isinstance(function, str) or function.startswith(RESERVED_PREFIX):
            raise ValueError(f"a next step on {function!r}, a reserved name")
        where, payload = self.send(function, request)
        if where is None:
            raise AbandonJob("neither a server nor the spool took the workflow's next step")
        log.info("workflow step %s (%s) sent to %s", request.id, function, where)
        if where != KEPT:
            self._flows(lambda flows: flows.ledger.record_sent(
                [(request.id, function, where, payload, time.time())]))
