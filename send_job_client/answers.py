"""What a foreground sender makes of gearmand's answer: our Result, whether the worker was
ours (the result object it sent) or another language's (its raw data, warnings and
exception)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from gearman_frame.envelope import STATUS_ERROR, STATUS_FAILED, STATUS_OK, Result
from gearman_frame.errors import EnvelopeError
from gearman_frame.sending.dispatch import Outcome
from gearman_frame.wire import JOB_COMPLETE, JOB_FAILED

if TYPE_CHECKING:
    from gearman_frame.wire.client import Request as WireRequest


def result_of(outcome: Outcome) -> Result:
    """The Result of a finished foreground job (errors become status 'error').

    A raw job's answer is whatever the worker sent: WORK_DATA chunks (a foreign worker
    may stream its output) joined in order with the final data, as stdout on success or
    stderr on failure; WORK_WARNING texts go to stderr. An envelope job's answer is our
    result object (on failure the last WORK_DATA, or the WORK_EXCEPTION)."""
    job, request = outcome.job, outcome.request
    if outcome.error is not None or request is None:
        return Result(status=STATUS_ERROR, error=str(outcome.error or "no request was sent"),
                      id=job.id, attempts=len(outcome.attempts))
    if job.data is not None:
        return _raw_result(request, job.id)
    if request.state == JOB_COMPLETE:
        return _decode(request.result, job.id)
    if request.state == JOB_FAILED and request.data_updates:
        return _decode(request.data_updates[-1], job.id)
    if request.state == JOB_FAILED and request.exception:
        return _exception_result(bytes(request.exception), job.id)
    return Result(status=STATUS_FAILED, id=job.id, error=NO_DETAILS)


def _exception_result(text: bytes, job_id: str) -> Result:
    """A WORK_EXCEPTION: our result object (from a worker on a server without WORK_DATA)
    or a foreign worker's exception text."""
    try:
        return Result.decode(text)
    except EnvelopeError:
        return Result(status=STATUS_FAILED, id=job_id, stderr=text,
                      error="the worker raised an exception")


#: The error of a job that failed with nothing but a WORK_FAIL.
NO_DETAILS = ("no result: gearmand dropped the job (a worker died on every one of its "
              "--job-retries attempts) or a foreign worker failed it without details "
              "(bare WORK_FAIL, or an exception)")


def _raw_result(request: WireRequest, job_id: str) -> Result:
    data = b"".join(bytes(chunk) for chunk in request.data_updates)
    warnings = b"".join(bytes(w) for w in request.warning_updates)
    if request.state == JOB_COMPLETE:
        return Result(status=STATUS_OK, id=job_id, stdout=data + bytes(request.result or b""),
                      stderr=warnings)
    exception = bytes(request.exception or b"")
    error = ("the job failed" if data or exception or warnings else NO_DETAILS)
    return Result(status=STATUS_FAILED, id=job_id, stderr=warnings + data + exception,
                  error=error)


def _decode(data: bytes | None, job_id: str) -> Result:
    try:
        return Result.decode(data or b"")
    except EnvelopeError as err:
        return Result(status=STATUS_ERROR, id=job_id, error=f"undecodable result: {err}",
                      stdout=data)

