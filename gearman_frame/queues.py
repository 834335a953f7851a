"""Names and records of gearman-frame's own queues, shared by workers and the admin.

* ``__ctl__.NAME``: the control function each thread of worker NAME serves; a
  ``shutdown`` job on it stops that worker gracefully.
* ``__dead__.FUNCTION``: background jobs of FUNCTION that failed every attempt, each
  carrying the original request and the last result, for the admin to dump and resend.
* ``__results__.CHANNEL``: the results of jobs sent with that channel (``reply_to``),
  published by workers as background jobs, collected by senders into their result store.
"""
from __future__ import annotations

import time

from .envelope import Request, Result, dumps, loads
from .errors import EnvelopeError

CONTROL_PREFIX = "__ctl__."
DEAD_PREFIX = "__dead__."
RESULTS_PREFIX = "__results__."
CONTROL_SHUTDOWN = b"shutdown"
#: The control command that has a worker read its config again (as SIGHUP does).
CONTROL_RELOAD = b"reload"
#: The control command a worker process answers with its live state (JSON).
CONTROL_INSPECT = b"inspect"
#: The control command ``cancel JOB_ID``: stop a job the worker runs now.
CONTROL_CANCEL = b"cancel"


#: Marks a dead letter sent back to its function: ``UNIQUE~rN`` is its Nth requeue.
REQUEUE_MARK = "~r"


def requeues_of(unique: str | None) -> tuple[str, int]:
    """``(the original unique, how many times it was requeued)`` of a job's unique key."""
    base, mark, count = (unique or "").rpartition(REQUEUE_MARK)
    if mark and count.isdigit():
        return base, int(count)
    return unique or "", 0


def requeued_unique(base: str, count: int) -> str:
    """The unique of a job's ``count``-th requeue (within gearmand's 63 bytes)."""
    return f"{base[:50]}{REQUEUE_MARK}{count}"


def control_function(worker_name: str) -> str:
    return f"{CONTROL_PREFIX}{worker_name}"


def dead_letter_function(function: str) -> str:
    return f"{DEAD_PREFIX}{function}"


def results_function(channel: str) -> str:
    return f"{RESULTS_PREFIX}{channel}"


def result_record(result: Result, request: Request, function: str, started_at: float,
                  ended_at: float) -> dict:
    """A published result (to encode with dumps): the Result's fields, and the job's
    function, args, kwargs and start and end times (Unix): one JSON object any language
    can read."""
    return {**result.to_dict(), "function": function, "args": list(request.args),
            "kwargs": request.kwargs, "started_at": started_at, "ended_at": ended_at}


def dead_letter_record(function: str, unique: str | None, data: bytes, result: dict,
                       requeues: int = 0) -> bytes:
    """Encode a dead letter: where the job was going, its unique and data, how it ended
    (and how many times it was sent back to its function before)."""
    record = {"function": function, "unique": unique, "data": bytes(data),
              "result": result, "dead_at": time.time()}
    if requeues:
        record["requeues"] = requeues
    return dumps(record)


def read_dead_letter(payload: object) -> dict:
    """Decode a dead letter into a dict with function, unique, data (bytes), result."""
    if not isinstance(payload, (bytes, str)):
        raise EnvelopeError("not a dead-letter record")
    record = loads(payload)
    if not isinstance(record, dict) or not {"function", "unique", "data"} <= set(record):
        raise EnvelopeError("not a dead-letter record")
    return record
