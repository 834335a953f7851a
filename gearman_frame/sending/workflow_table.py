"""A workflow and its steps as text and JSON: what ``sendjob status WF_ID``,
``runadmin workflows`` and the dashboard show."""
from __future__ import annotations

import time

from ..ledger.flows import Flows, Workflow
from .workflow_state import StepView, steps_of


def _clock(when: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)) if when else "-"


def _took(start: float | None, end: float | None) -> str:
    return f"{end - start:.3f}s" if start and end else "-"


def workflow_object(flows: Flows, workflow: Workflow) -> dict:
    """The workflow and its steps as one JSON object."""
    steps = steps_of(flows, workflow)
    return {"id": workflow.id, "kind": workflow.kind, "state": workflow.state,
            "steps": workflow.steps, "steps_ended": ended_steps(steps), "host": workflow.host,
            "created": workflow.created, "ended": workflow.ended,
            "ended_at": workflow.last_step, "step_list": [step_object(s) for s in steps]}


def step_object(step: StepView) -> dict:
    return {"number": step.number, "id": step.id, "function": step.function,
            "status": step.status, "host": step.host, "started": step.started,
            "ended": step.ended}


def workflow_lines(flows: Flows, workflow: Workflow) -> list[str]:
    """A header line, then one line per step: number, function, status, host, start and
    how long it took (the on-failure step is numbered 0)."""
    steps = steps_of(flows, workflow)
    done = ended_steps(steps)
    lines = [f"workflow {workflow.id} {workflow.kind} {workflow.state}: {done}/"
             f"{workflow.steps} steps ended, started {_clock(workflow.created)} on "
             f"{workflow.host or '-'}, took {_took(workflow.created, workflow.ended)}"]
    width = max(len(s.function) for s in steps) if steps else 0
    for step in steps:
        label = "on-failure" if step.number == 0 else f"{step.number:>4}"
        lines.append(f"  {label:>10}  {step.function:<{width}}  {step.status:<9} "
                     f"{step.host or '-':<16} {_clock(step.started)}  "
                     f"{_took(step.started, step.ended)}")
    return lines


def ended_steps(steps: list[StepView]) -> int:
    """How many of a workflow's planned steps ended (the on-failure step aside)."""
    return sum(1 for s in steps if s.number and s.status not in ("waiting", "running",
                                                                  "skipped"))


def summary_line(flows: Flows, workflow: Workflow) -> str:
    """One workflow on one line (``runadmin workflows``): id, kind, state, steps ended
    of all, when it started, how long it took, the sender's host."""
    done = ended_steps(steps_of(flows, workflow))
    return (f"{workflow.id}  {workflow.kind:<5}  {workflow.state:<7}  {done:>5}/"
            f"{workflow.steps:<5}  {_clock(workflow.created)}  "
            f"{_took(workflow.created, workflow.ended):>9}  {workflow.host or '-'}")
