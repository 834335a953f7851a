"""A workflow as a person or a sender sees it, read from the ledger (so from any host):
each step with its status, host and times, and the Result the workflow came to. Shared
by sendjob (status, the wait of ``submit_workflow``), runadmin and the dashboard."""
from __future__ import annotations

from dataclasses import dataclass

from ..envelope import STATUS_OK, Result
from ..ledger.flows import FAILED, RUNNING, Flows, Workflow
from ..workflows.steps import failure_id, outcome_of, step_id


@dataclass(frozen=True)
class StepView:
    """One step of a workflow: ``number`` counts from 1 in plan order (the on-failure
    step is 0); ``status`` is the ledger's (ok, failed, ...), ``running``, ``waiting``
    (not sent yet) or ``skipped`` (never runs: the workflow ended without it)."""

    number: int
    id: str
    function: str
    stage: int
    status: str
    host: str | None
    started: float | None
    ended: float | None


def steps_of(flows: Flows, workflow: Workflow) -> list[StepView]:
    stages = workflow.plan.get("stages") or []
    planned = [(step_id(workflow.id, k, i), step.get("f", "?"), k)
               for k, stage in enumerate(stages) for i, step in enumerate(stage)]
    failure = workflow.plan.get("on_failure")
    if failure:
        planned.append((failure_id(workflow.id), failure.get("f", "?"), -1))
    entries = flows.outcomes([p[0] for p in planned])
    views = []
    for number, (job_id, function, stage) in enumerate(planned, 1):
        entry = entries.get(job_id)
        if entry is not None:
            status = entry.status if entry.state == "ended" else "running"
        elif workflow.state == RUNNING and stage >= 0:
            status = "waiting"
        else:
            status = "skipped"
        views.append(StepView(0 if stage < 0 else number, job_id, function, stage,
                              status or "?", entry.host if entry else None,
                              entry.started if entry else None,
                              entry.ended if entry else None))
    return views


def workflow_result(flows: Flows, workflow: Workflow) -> Result:
    """What an ended workflow came to: its last step's Result; a last group's outcomes
    as one Result (``stdout``: one command's outcome a line; ``value``: the list, when
    its members are tasks); a failed step's
    Result with an ``error`` that names the step."""
    ended = workflow.last_step or ""
    entries = flows.outcomes([ended]) if ended.count(".") == 2 else {}
    if workflow.state == FAILED:
        entry = entries.get(ended)
        result = Result.decode(entry.result) if entry and entry.result else \
            Result(status="error", error="the failed step's outcome is gone (pruned)")
        step = next((s for s in steps_of(flows, workflow) if s.id == ended), None)
        where = (f"step {step.number} of {workflow.steps} ({step.function})" if step
                 else ended)
        result.error = f"workflow {workflow.id} failed at {where}: {result.error or result.status}"
        return result
    last = entries[ended].result if ended in entries else None
    if last:
        return Result.decode(last)
    # a group ended it: its members' outcomes, in order
    stage = int(ended.rsplit(".", 1)[-1]) if ended.startswith(workflow.id + ".") else 0
    size = len((workflow.plan.get("stages") or [[]])[stage])
    ids = [step_id(workflow.id, stage, i) for i in range(size)]
    members = flows.outcomes(ids)
    texts = [members[i].result for i in ids if i in members]
    results = [Result.decode(text) for text in texts if text]
    values = [outcome_of(r.to_dict()) for r in results]
    text = "".join(f"{v}\n" if isinstance(v, str) else "" for v in values)
    tasks = any(r.value is not None for r in results)  # commands: their lines in stdout
    return Result(status=STATUS_OK, value=values if tasks else None, stdout=text,
                  id=workflow.id,
                  attempts=sum(r.attempts for r in results),
                  duration_s=round((workflow.ended or workflow.created) - workflow.created, 6))
