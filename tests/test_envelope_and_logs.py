"""The job envelope round-trips any bytes; log records carry worker, function and job id."""
import io
import json
import logging
import threading

import pytest

from gearman_frame.config import LoggingConfig
from gearman_frame.envelope import Request, Result, dumps, loads, parse_request
from gearman_frame.errors import EnvelopeError
from gearman_frame.logs import job_context, setup_logging


def test_request_round_trips_bytes_and_text():
    request = Request(args=("a", b"\xff\x00"), kwargs={"path": "héllo", "blob": bytes(range(256))})
    decoded, raw = parse_request(request.encode())
    assert raw is None
    assert decoded == request
    assert len(request.id) == 32


def test_raw_payload_passes_through_untouched():
    assert parse_request(b"\xff\xfe plain") == (None, b"\xff\xfe plain")
    assert parse_request(b"") == (None, b"")


def test_an_envelope_is_parsed_not_guessed():
    # an object with "v": 1 and a string "id", whatever the order: an envelope
    assert parse_request(b'{"kwargs": [], "id": "x", "v": 1}')[0].kwargs == {}
    # with args or kwargs of the wrong type: an error
    with pytest.raises(EnvelopeError):
        parse_request(b'{"v": 1, "id": "x", "args": "oops"}')
    # anything else (not JSON, cut short, no v or id, v not the number 1): raw
    for raw in (b'{"v": 1, "args": "oops"', b'{"user": {"v": 1}}', b'{"v": true, "id": "x"}',
                b'{"v": 1, "id": 7}', b"[1]"):
        assert parse_request(raw) == (None, raw)


def test_result_round_trips_and_rejects_unknown_status():
    result = Result(status="timeout", exit_code=None, signal=15, stdout=b"\xff", attempts=2)
    assert Result.decode(result.encode()) == result
    with pytest.raises(EnvelopeError):
        Result.decode(b'{"status": "maybe"}')


def test_bytes_come_back_however_the_key_is_escaped_and_a_cycle_is_a_value_error():
    assert loads(b'{"x": {"\\u005f_b64__": "/wA="}}') == {"x": b"\xff\x00"}
    assert loads(dumps({"x": [b"\xff", "__b64__"]})) == {"x": [b"\xff", "__b64__"]}
    cycle = []
    cycle.append(cycle)
    with pytest.raises(ValueError):
        dumps(cycle)


def test_result_from_a_newer_worker_keeps_the_fields_this_version_knows():
    result = Result.decode(b'{"status": "ok", "value": 3, "queue_ms": 12}')
    assert result.ok and result.value == 3 and not hasattr(result, "queue_ms")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_records_from_threads_carry_their_own_job_context(fmt):
    stream = io.StringIO()
    handler = setup_logging(LoggingConfig(level="INFO", format=fmt), stream=stream)
    log = logging.getLogger("gearman_frame.test")

    def work(i):
        with job_context(worker=f"w.{i}", function="compress", job_id=f"job{i}"):
            log.info("running %s", i)

    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        log.info("outside")
    finally:
        logging.getLogger().removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5
    for i in range(4):
        line = next(l for l in lines if f"running {i}" in l)
        if fmt == "json":
            entry = json.loads(line)
            assert (entry["worker"], entry["function"], entry["job_id"]) == (f"w.{i}", "compress", f"job{i}")
        else:
            assert f"w.{i} compress job{i}" in line
    assert " - - - " in lines[-1] or json.loads(lines[-1])["job_id"] == "-"
