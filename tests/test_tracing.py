"""OpenTelemetry traces from the sender through the worker into the command (real
gearmand, the installed CLIs, OpenTelemetry's console exporter writing spans to a file)."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest
import yaml

from gearman_frame.envelope import Request, Result
from gearman_frame.signing import Keyring, read_key_file
from gearman_frame.tracing import EXPORT_TIMEOUT
from send_job_client import JobClient

from .client_helpers import client_config, sendjob
from .helpers import wait_for
from .test_signing import attacker, make_key, security

BIN = os.path.dirname(sys.executable)
#: A command that shows the trace context it was given, then exits with {code}.
SHOWS = {"shows": {"shell": "echo $TRACEPARENT; exit {code}", "retries": 1,
                   "retry_delay": 0.1}}


def spans_in(path, count, what="spans"):
    """The spans of a console exporter's file (one JSON per line), once ``count`` are."""
    def read():
        if not path.exists():
            return None
        spans = [json.loads(line) for line in path.read_text().splitlines() if line]
        return spans if len(spans) >= count else None
    return wait_for(read, 15, what)


def traced_worker(gearmand, start_workers, tmp_path, name):
    """A worker serving SHOWS that writes its spans to a file, and a sender's config that
    does not trace (a test turns it on by the variables): (the spans' file, the config)."""
    worker_spans = tmp_path / "worker.jsonl"
    start_workers([gearmand.address], SHOWS, name=name,
                  extra_config={"tracing": {"exporter": "console",
                                            "file": str(worker_spans)}})
    config, _ = client_config(tmp_path, [gearmand.address], timeout=20)
    return worker_spans, config


def by_name(spans, trace_id):
    found = {}
    for span in spans:
        if span["context"]["trace_id"] == trace_id:
            found.setdefault(span["name"], []).append(span)
    return found


def test_the_senders_span_the_workers_and_the_commands_traceparent_share_one_trace(
        gearmand, start_workers, tmp_path):
    worker_spans, sender_spans = tmp_path / "worker.jsonl", tmp_path / "sender.jsonl"
    start_workers([gearmand.address], SHOWS, name="traced",
                  extra_config={"tracing": {"exporter": "console",
                                            "file": str(worker_spans)}})
    config, _ = client_config(tmp_path, [gearmand.address], timeout=20,
                              tracing={"exporter": "console", "file": str(sender_spans)})
    out = sendjob(config, "run", "shows", "code=0", "--json")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    result = json.loads(lines[-1])  # --json: stdout is the answer only
    traceparent = result["stdout"].strip()
    version, trace_id, parent_span, flags = traceparent.split("-")
    assert version == "00" and len(trace_id) == 32 and flags in ("01", "03")

    (send,) = spans_in(sender_spans, 1, "the sender's span")
    spans = by_name(spans_in(worker_spans, 2, "the worker's spans"), "0x" + trace_id)
    assert send["context"]["trace_id"] == "0x" + trace_id
    assert send["name"] == "send shows" and send["kind"] == "SpanKind.CLIENT"
    assert sorted(spans) == ["queued shows", "run shows"]  # no retry, no span for one
    (run,), (queued,) = spans["run shows"], spans["queued shows"]
    # the worker's spans are the sender's children; the command runs in the run span
    assert run["parent_id"] == send["context"]["span_id"] == queued["parent_id"]
    assert run["context"]["span_id"] == "0x" + parent_span
    assert run["attributes"]["gearman_frame.function"] == "shows"
    assert run["attributes"]["gearman_frame.job_id"] == result["id"]
    assert run["attributes"]["gearman_frame.worker"].startswith("traced")
    assert run["attributes"]["gearman_frame.status"] == "ok"
    assert run["attributes"]["gearman_frame.exit_code"] == 0
    assert send["resource"]["attributes"]["service.name"] == "gearman-frame-sender"
    assert run["resource"]["attributes"]["service.name"] == "gearman-frame-worker"


def test_a_retry_is_a_child_span_and_the_failure_is_on_the_run(gearmand, start_workers,
                                                                 tmp_path):
    worker_spans, config = traced_worker(gearmand, start_workers, tmp_path, "retried")
    # the sender traces through the standard variables; its spans go to stderr
    out = sendjob(config, "run", "shows", "code=3", "--json",
                  env={"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "nightly"})
    assert out.returncode == 1
    result = json.loads(out.stdout)  # stdout holds the answer alone
    assert result["attempts"] == 2
    send = json.loads([line for line in out.stderr.splitlines() if '"name"' in line][0])
    assert send["resource"]["attributes"]["service.name"] == "nightly"
    trace_id = send["context"]["trace_id"]
    spans = by_name(spans_in(worker_spans, 3, "the worker's spans"), trace_id)
    (run,), (retry,) = spans["run shows"], spans["retry 1"]
    assert retry["parent_id"] == run["context"]["span_id"]
    assert retry["attributes"]["gearman_frame.attempt"] == 2
    assert retry["status"]["status_code"] == "ERROR" == run["status"]["status_code"]
    assert run["attributes"]["gearman_frame.attempts"] == 2
    assert run["attributes"]["gearman_frame.exit_code"] == 3
    # the retry's command got the retry's context (the first attempt's, the run's)
    assert result["stdout"].split("-")[2] == retry["context"]["span_id"][2:]


@pytest.mark.needs_tool("gearman")
def test_signing_covers_the_traceparent(gearmand, start_workers, tmp_path):
    key, worker_spans = make_key(tmp_path / "fleet.key"), tmp_path / "worker.jsonl"
    start_workers([gearmand.address], {"shows": SHOWS["shows"]}, name="signed",
                  extra_config={**security(key), "tracing": {"exporter": "console",
                                                             "file": str(worker_spans)}})
    keyring = Keyring(read_key_file(str(key), None, "k"))
    traceparent = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    payload = Request(kwargs={"code": "0"}, traceparent=traceparent).encode(keyring, "shows")
    forged = payload.replace(b"ab" * 16, b"ef" * 16)
    assert forged != payload
    code, said = attacker(gearmand, "shows", forged)
    assert code != 0 and b"refused" in said  # an altered trace context: a bad signature
    code, said = attacker(gearmand, "shows", payload)
    assert code == 0, said
    shown = Result.decode(said.strip()).stdout.strip().split("-")
    assert shown[1] == "ab" * 16 and shown[2] != "cd" * 8  # the trace, a span of the worker
    spans = spans_in(worker_spans, 2, "the worker's spans")
    trace_ids = {span["context"]["trace_id"] for span in spans}
    assert trace_ids == {"0x" + "ab" * 16}  # the forged trace never began


def test_an_unreachable_collector_never_slows_or_fails_a_job(gearmand, start_workers,
                                                             tmp_path):
    # a collector that takes connections and never answers: an export on a job's path
    # would hold that job for the exporter's whole timeout
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    nowhere = f"http://127.0.0.1:{silent.getsockname()[1]}"
    traced = {"tracing": {"exporter": "otlp", "endpoint": nowhere}}
    worker = start_workers([gearmand.address], SHOWS, name="lonely", extra_config=traced)
    _, config = client_config(tmp_path, [gearmand.address], timeout=20, **traced)
    with JobClient(config) as client:
        took = []
        for _ in range(20):
            started = time.monotonic()
            result = client.submit("shows", code="0")
            took.append(time.monotonic() - started)
            assert result.ok and result.stdout.startswith("00-")
    assert max(took) < EXPORT_TIMEOUT, took
    out = subprocess.run([os.path.join(BIN, "sendjob"), "--config",
                          str(tmp_path / "client.yaml"), "run", "shows", "code=0"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.startswith("00-")
    # the collector being down is said, once in a while, not for every batch
    wait_for(lambda: "opentelemetry" in worker.log(), 20, "the exporter's complaint")
    assert worker.log().count("opentelemetry") <= 2
    silent.close()


@pytest.mark.parametrize("settings, env, says", [
    ({"exporter": "zipkin"}, {}, "tracing.exporter: expected one of console, otlp, none"),
    ({"sample_ratio": 2}, {}, "tracing.sample_ratio: expected a number from 0 to 1"),
    ({"endpoint": "collector:4318"}, {}, "tracing.endpoint: expected an http:// or https://"),
    ({}, {"OTEL_TRACES_EXPORTER": "jaeger"}, "$OTEL_TRACES_EXPORTER: expected one of"),
])
def test_bad_tracing_settings_are_one_line_naming_the_key(tmp_path, settings, env, says):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"servers": ["127.0.0.1:4730"], "tracing": settings,
                                      "functions": {"f": {"shell": "true"}}}))
    for program in ("runworkers", "sendjob"):
        argv = [os.path.join(BIN, program), "--config", str(config)]
        argv += ["run", "f"] if program == "sendjob" else []
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                             env={**os.environ, **env})
        assert out.returncode == 2, (program, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], (program, lines)


def test_a_trace_not_kept_makes_no_span_and_still_reaches_the_command(
        gearmand, start_workers, tmp_path):
    worker_spans, config = traced_worker(gearmand, start_workers, tmp_path, "sampling")
    dropped = sendjob(config, "run", "shows", "code=0", "--json",
                      env={"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER_ARG": "0"})
    assert dropped.returncode == 0, dropped.stderr
    _, trace_id, _, flags = json.loads(dropped.stdout)["stdout"].strip().split("-")
    assert flags == "00" and '"name"' not in dropped.stderr  # no span, a context all the same
    # a kept trace after it: once its spans are written, the first left none
    kept = sendjob(config, "run", "shows", "code=0", "--json",
                   env={"OTEL_TRACES_EXPORTER": "console"})
    kept_id = json.loads(kept.stdout)["stdout"].strip().split("-")[1]
    spans = spans_in(worker_spans, 2, "the kept trace's spans")
    assert {s["context"]["trace_id"] for s in spans} == {"0x" + kept_id}
    assert trace_id != kept_id


def test_a_workflows_steps_are_one_trace(gearmand, start_workers, tmp_path):
    """A chain sent by a traced sender: the second step's spans are children of the first
    step's run span (the worker that ended it sent it), and both commands got the one
    trace id."""
    worker_spans, sender_spans = tmp_path / "worker.jsonl", tmp_path / "sender.jsonl"
    store = {"store": {"url": f"sqlite:///{tmp_path / 'ledger.sqlite'}"}}
    functions = {"first": {"shell": "echo $TRACEPARENT"},
                 "second": {"shell": "echo {prev} $TRACEPARENT"}}
    start_workers([gearmand.address], functions, name="flows",
                  extra_config={"tracing": {"exporter": "console", "file": str(worker_spans)},
                                **store})
    config, _ = client_config(tmp_path, [gearmand.address], timeout=20, **store,
                              tracing={"exporter": "console", "file": str(sender_spans)})
    out = sendjob(config, "chain", "first", "second", "--json")
    assert out.returncode == 0, out.stderr
    first_parent, second_parent = json.loads(out.stdout.splitlines()[-1])["stdout"].split()
    trace_id = first_parent.split("-")[1]
    assert second_parent.split("-")[1] == trace_id
    (send,) = spans_in(sender_spans, 1, "the sender's span")
    assert send["context"]["trace_id"] == "0x" + trace_id
    spans = by_name(spans_in(worker_spans, 4, "both steps' spans"), "0x" + trace_id)
    (run_first,), (run_second,) = spans["run first"], spans["run second"]
    assert run_first["parent_id"] == send["context"]["span_id"]
    assert run_second["parent_id"] == run_first["context"]["span_id"]
