"""Malformed jobs from any client are answered without a traceback: one log line naming
the function, the job id and what was wrong, an error result, and a dead letter for a
background job; a raw payload never runs a Python task."""
import pytest

from gearman_frame.envelope import Result
from gearman_frame.queues import dead_letter_function
from gearman_frame.wire import WireClient

from .helpers import queued, wait_for

FUNCTIONS = {"cat_data": {"command": ["cat"], "stdin": "data"},
             "echo": {"command": ["echo", "{v}"]}}

CASES = {  # function, payload, what the result's error must say
    "a NUL in the job id": ("echo", b'{"v": 1, "id": "ab\\u0000cd", "kwargs": {"v": "x"}}',
                            "job id"),
    "a dict as a stdin: data input": ("cat_data", b'{"v": 1, "id": "d1", "args": [{"a": 1}]}',
                                      "got dict"),
    "a number as a stdin: data input": ("cat_data", b'{"v": 1, "id": "d2", "args": [42]}',
                                        "got int"),
    "a lone surrogate in a kwarg": ("echo", b'{"v": 1, "id": "s1", "kwargs": {"v": "\\ud800"}}',
                                    "lone surrogate"),
    "a raw payload to a Python task": ("reverse", b"raw bytes here", "Python task"),
}


@pytest.fixture
def worker(gearmand, start_workers):
    return start_workers([gearmand.address], FUNCTIONS, plugins=["plugins.eg"])


@pytest.mark.parametrize("case", list(CASES))
def test_a_malformed_job_gets_an_error_result_and_no_traceback(gearmand, worker, case):
    function, payload, reason = CASES[case]
    sent = WireClient([gearmand.address]).submit(function, payload, timeout=20)
    assert sent.state == "FAILED"
    details = sent.data_updates[-1]
    if function == "reverse":  # a raw job's failure comes back as plain text
        assert reason in details.decode()
    else:
        result = Result.decode(details)
        assert result.status == "error" and reason in result.error, result.error
    wait_for(lambda: "failed: " in worker.log(), 10, "the failure logged")
    assert "Traceback" not in worker.log()


def test_a_malformed_background_job_is_dead_lettered(gearmand, worker):
    WireClient([gearmand.address]).submit(
        "cat_data", b'{"v": 1, "id": "bg1", "bg": true, "args": [{"a": 1}]}',
        unique="bg1", background=True, timeout=10)
    wait_for(lambda: queued(gearmand, dead_letter_function("cat_data")) == 1, 15,
             "its dead letter")
    assert "Traceback" not in worker.log()
