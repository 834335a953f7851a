"""What a workflow's step carries and how one step hands over to the next, shared by the
sender (which sends the first stage) and the worker (which, ending a step, sends what
follows: there is no coordinator).

A step's envelope has ``wf``: ``{"id": WORKFLOW, "stage": K, "index": I, "size": N,
"rest": [STAGES AFTER K], "fail": ON_FAILURE STEP}`` (``{"id", "failure": true}`` for
the on-failure step), signed with the rest of the envelope, and ``prev``: the outcome of
the stage before. A step's job id is ``WORKFLOW.K.I``, the same from whoever sends it,
so a step sent twice (its sender died between the two) is claimed and runs once.
"""
from __future__ import annotations

import os
from typing import Any

#: Workflow ids start with this (``sendjob status`` tells them from job ids).
PREFIX = "wf-"


def new_workflow_id() -> str:
    return PREFIX + os.urandom(14).hex()


def is_workflow_id(text: str) -> bool:
    return text.startswith(PREFIX) and "." not in text


def step_id(workflow: str, stage: int, index: int) -> str:
    return f"{workflow}.{stage}.{index}"


def failure_id(workflow: str) -> str:
    return f"{workflow}.failure"


def stage_field(workflow: str, stage: int, index: int, size: int, rest: list,
                fail: dict | None) -> dict:
    """The ``wf`` field of step ``index`` of stage ``stage`` (of ``size`` steps)."""
    return {"id": workflow, "stage": stage, "index": index, "size": size, "rest": rest,
            "fail": fail}


def failure_field(workflow: str) -> dict:
    return {"id": workflow, "failure": True}


def outcome_of(result: dict) -> Any:
    """What a step hands to the next: a task's value, or a command's stdout without its
    final newline."""
    value = result.get("value")
    if value is not None:
        return value
    out = result.get("stdout", "")
    if isinstance(out, (bytes, bytearray)):
        return bytes(out[:-1]) if out.endswith(b"\n") else bytes(out)
    out = str(out or "")
    return out[:-1] if out.endswith("\n") else out


def as_text(prev: Any) -> str:
    """The ``{prev}`` field and the stdin of a command step: text as it is, a group's
    outcomes one per line, anything else as JSON."""
    if isinstance(prev, str):
        return prev
    if isinstance(prev, (bytes, bytearray)):
        return bytes(prev).decode("utf-8", "replace")
    if isinstance(prev, list):
        return "\n".join(as_text(item) for item in prev)
    from ..envelope import dumps
    return dumps(prev).decode("utf-8")


def following(workflow: str, rest: list, fail: dict | None, stage: int, prev: Any,
              trace: dict | None = None) -> list[tuple[str, Any]]:
    """The steps of stage ``stage`` (``rest[0]``; ``rest[1:]`` follow it) as
    ``(function, Request)``, each given ``prev``; ``trace``: the TRACEPARENT (and
    TRACESTATE) they continue. The worker that ends a step and the reaper both send these."""
    from ..envelope import Request
    trace = trace or {}
    now = rest[0]
    return [(step["f"], Request(tuple(step["args"]), dict(step["kwargs"]),
                                id=step_id(workflow, stage, number), background=True,
                                wf=stage_field(workflow, stage, number, len(now), rest[1:],
                                               fail),
                                prev=prev, has_prev=True,
                                traceparent=trace.get("TRACEPARENT"),
                                tracestate=trace.get("TRACESTATE") or None))
            for number, step in enumerate(now)]


def on_failure(workflow: str, fail: dict, failed: dict) -> tuple[str, Any]:
    """The on-failure step as ``(function, Request)``, given the failed step's Result."""
    from ..envelope import Request
    return fail["f"], Request(tuple(fail["args"]), dict(fail["kwargs"]),
                              id=failure_id(workflow), background=True,
                              wf=failure_field(workflow), prev=failed, has_prev=True)


def result_dict(text: bytes | None) -> dict:
    """A recorded Result's JSON (None: nothing recorded) as a dict."""
    from ..envelope import loads
    value = loads(text or b"{}")
    return value if isinstance(value, dict) else {"value": value}


def stage_outcome(results: list) -> Any:
    """What a stage hands to the next, from its steps' recorded Result JSON in order: one
    step's outcome, or a group's list of outcomes."""
    outcomes = [outcome_of(result_dict(text)) for text in results]
    return outcomes[0] if len(outcomes) == 1 else outcomes


def prev_fields(spec: Any, request: Any) -> tuple[dict, str | None]:
    """A command step's template fields and stdin: ``{prev}`` (when its template has it)
    and, with ``stdin: data``, its input: the step before's outcome as text (on stdin,
    ending in a newline)."""
    text = as_text(request.prev)
    fields = request.kwargs
    if "prev" in spec.fields and "prev" not in fields:
        fields = {**fields, "prev": text}
    # stdin gets lines, as the step before's stdout had them (its final newline back)
    return fields, (text if not text or text.endswith("\n") else text + "\n") \
        if spec.stdin == "data" else None
