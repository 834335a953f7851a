"""Sending a workflow: its plan checked (every step's function known, its template's
fields given), recorded in the ledger, and its first stage queued; the workers carry it
on from there. ``submit_workflow`` then waits for its end in the ledger."""
from __future__ import annotations

import logging
import socket
import time
from typing import Any

from gearman_frame import tasks
from gearman_frame.config.defaults import RESERVED_PREFIX
from gearman_frame.envelope import Result
from gearman_frame.errors import (LedgerUnavailable, ServerRefused, UsageError,
                                  WorkflowTimeout)
from gearman_frame.ledger.flows import FAILED, RUNNING, Flows
from gearman_frame.sending.dispatch import Job
from gearman_frame.sending.workflow_state import workflow_result
from gearman_frame.templates import TemplateError, check_kwargs
from gearman_frame.workflows.canvas import Plan, plan_of
from gearman_frame.workflows.steps import new_workflow_id, stage_field, step_id

log = logging.getLogger(__name__)
HOST = socket.gethostname()
#: Seconds between two looks at a running workflow (doubling from the first).
POLL_FIRST, POLL_MAX = 0.02, 0.5


def flows_of(client: Any) -> Flows:
    """The ledger's workflows; UsageError when the ledger is off."""
    config = client.config
    if not config.store.on:
        raise UsageError(f"workflows need the job ledger: set store.url in "
                         f"{config.path or 'the config'} (sqlite:///ledger.db on one host, "
                         "postgresql://... for a fleet)")
    return Flows(client.ledger())


def check_plan(plan: Plan, config: Any) -> None:
    """ValueError naming the step: a function that is neither configured, nor a known
    task, nor served by a worker on a server that answers; or a command step whose
    template's fields are not given (``{prev}`` comes from the step before, so a first
    step cannot use it)."""
    known = set(config.functions) | set(tasks.registered())
    steps = [(k, step) for k, stage in enumerate(plan.stages) for step in stage]
    if plan.on_failure is not None:
        steps.append((1, plan.on_failure))
    for number, (stage, step) in enumerate(steps, 1):
        where = ("the on-failure step" if plan.on_failure is step
                 else f"step {number} ({step['f']})")
        if step["f"].startswith(RESERVED_PREFIX):
            raise ValueError(f"{where}: {step['f']!r} is a reserved name (functions starting "
                             f"with {RESERVED_PREFIX!r} are gearman-frame's own)")
        if step["f"] not in known:
            from gearman_frame.wire.served import workers_for
            if workers_for(config.servers, step["f"]) == 0:
                raise ValueError(f"{where}: unknown function {step['f']!r} (not in "
                                 "functions:, not a registered task, and no worker serves "
                                 "it on any server)")
            known.add(step["f"])
        spec = config.functions.get(step["f"])
        if spec is None or not spec.fields:
            continue
        if stage == 0 and "prev" in spec.fields:
            raise ValueError(f"{where}: its template has {{prev}}, the outcome of the step "
                             "before, but it is a first step")
        given = dict(step["kwargs"])
        if stage > 0 and "prev" in spec.fields:
            given.setdefault("prev", "")
        try:
            check_kwargs(spec.fields, given)
        except TemplateError as err:
            raise ValueError(f"{where}: {err}") from err


def put_workflow(client: Any, flow: Any) -> str:
    """Check, record and start ``flow``; its workflow id."""
    plan = plan_of(flow)
    check_plan(plan, client.config)
    flows = flows_of(client)
    workflow = new_workflow_id()
    flows.start(workflow, plan.kind, {"stages": plan.stages, "on_failure": plan.on_failure},
                plan.steps, HOST)
    first, rest = plan.stages[0], plan.stages[1:]
    jobs = [Job(step["f"], tuple(step["args"]), dict(step["kwargs"]),
                id=step_id(workflow, 0, i), reply_to="",
                wf=stage_field(workflow, 0, i, len(first), rest, plan.on_failure))
            for i, step in enumerate(first)]
    deliveries = client.submit_many(jobs, background=True) or []
    refused = [d for d in deliveries if d.error]
    if refused:
        flows.end(workflow, FAILED, refused[0].id)
        raise ServerRefused("REFUSED", f"workflow {workflow}: its first step was refused: "
                            f"{refused[0].error}")
    return workflow


def wait_workflow(client: Any, workflow: str, timeout: float | None = None) -> Result:
    """The Result workflow ``workflow`` came to, once it ended (see workflow_result);
    WorkflowTimeout if it still runs after ``timeout`` seconds. While the ledger cannot be
    reached it waits on (the workflow goes on without it)."""
    flows = flows_of(client)
    deadline = None if timeout is None else time.monotonic() + timeout
    pause, said = POLL_FIRST, False
    while True:
        try:
            found = flows.get(workflow)
        except LedgerUnavailable as err:
            if not said:
                log.warning("the job ledger is unreachable (%s): waiting for workflow %s "
                            "until it is back", err, workflow)
                said = True
            found = None
            pause = POLL_MAX
        else:
            if found is None:
                raise UsageError(f"no workflow {workflow} in the ledger "
                                 f"({flows.ledger.where})")
        if found is not None and found.state != RUNNING:
            return workflow_result(flows, found)
        if deadline is not None and time.monotonic() >= deadline:
            raise WorkflowTimeout(workflow, timeout or 0.0)
        time.sleep(pause if deadline is None else
                   max(0.0, min(pause, deadline - time.monotonic())))
        pause = min(pause * 2, POLL_MAX)
