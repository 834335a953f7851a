"""The wire layer against real gearmand: bytes round-trip, the library's traps are fixed."""
import os
import resource
import shutil
import socket
import subprocess

import pytest

from gearman_frame.addresses import parse_address
from gearman_frame.errors import BadRequest, ServerRefused, ServerUnavailable, SubmitTimeout
from gearman_frame.wire import MAX_FUNCTION_BYTES, JobFailed, WireClient

from .helpers import queued, wait_for
from .wire_helpers import WorkerThread, echo

PAYLOADS = {
    "ascii": b"hello world",
    "utf8": "héllo wörld".encode(),
    "cjk": "漢字かなカナ한국어".encode(),
    "emoji": "🙂🚀👩‍💻".encode(),
    "non_utf8": b"\xff\xfe\xc3\x28\x80",
    "nul": b"a\x00b\x00\x00c",
    "empty": b"",
    "all_bytes": bytes(range(256)),
    "1mb": os.urandom(1 << 20),
    "16mb": os.urandom(16 << 20),
}
C_TOOL_PAYLOADS = [k for k in PAYLOADS if k != "16mb"]  # the C tools need > 20 s for 16 MB
GEARMAN = shutil.which("gearman")
needs_c_tools = pytest.mark.needs_tool("gearman")


def c_client(server, func, data, background=False):
    argv = [GEARMAN, "-h", server.host, "-p", str(server.port), "-f", func]
    if background:
        argv.append("-b")
    return subprocess.run(argv, input=data, capture_output=True, timeout=60)


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_payload_round_trips_between_our_client_and_worker(gearmand, func_name, name):
    with WorkerThread([gearmand.address], {func_name: echo}):
        request = WireClient([gearmand.address]).submit(func_name, PAYLOADS[name], timeout=30)
    assert request.result == PAYLOADS[name]


@needs_c_tools
@pytest.mark.parametrize("name", C_TOOL_PAYLOADS)
def test_c_client_payload_reaches_our_worker_byte_for_byte(gearmand, func_name, name):
    seen = []

    def record(worker, job):
        seen.append(job.data)
        return job.data

    with WorkerThread([gearmand.address], {func_name: record}):
        proc = c_client(gearmand, func_name, PAYLOADS[name])
    assert proc.returncode == 0, proc.stderr
    assert seen == [PAYLOADS[name]]
    assert proc.stdout == PAYLOADS[name]


@needs_c_tools
@pytest.mark.parametrize("name", C_TOOL_PAYLOADS)
def test_our_client_payload_reaches_c_worker_byte_for_byte(gearmand, func_name, name):
    # The C worker feeds the job to the command's stdin and returns its stdout; the command
    # buffers all input first (plain `cat` deadlocks the C worker beyond a pipe's 64 KiB).
    sponge = 'tmp=$(mktemp); cat > "$tmp"; cat "$tmp"; rm -f "$tmp"'
    worker = subprocess.Popen([GEARMAN, "-h", gearmand.host, "-p", str(gearmand.port), "-w",
                               "-f", func_name, "-c", "1", "--", "sh", "-c", sponge],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        request = WireClient([gearmand.address]).submit(func_name, PAYLOADS[name], timeout=30)
        assert request.result == PAYLOADS[name]
    finally:
        worker.kill()
        worker.wait()


def test_callbacks_that_raise_or_return_junk_fail_the_job_and_the_thread_lives(gearmand,
                                                                               func_name):
    tasks = {func_name + "raise": lambda w, j: 1 / 0,
             func_name + "none": lambda w, j: None,
             func_name + "fail": lambda w, j: JobFailed(b"details"),
             func_name: echo}
    client = WireClient([gearmand.address])
    with WorkerThread([gearmand.address], tasks) as thread:
        raised = client.submit(func_name + "raise", b"x", timeout=10)
        returned_none = client.submit(func_name + "none", b"x", timeout=10)
        failed = client.submit(func_name + "fail", b"x", timeout=10)
        after = client.submit(func_name, b"still here", timeout=10)
        assert thread.thread.is_alive()
    assert (raised.state, list(raised.data_updates)) == ("FAILED", [b"ZeroDivisionError: division by zero"])
    assert returned_none.state == "FAILED" and b"None" in returned_none.data_updates[0]
    assert (failed.state, list(failed.data_updates)) == ("FAILED", [b"details"])
    assert after.result == b"still here"


@needs_c_tools
def test_foreign_non_utf8_background_job_is_run_not_requeued(gearmand, func_name):
    seen = []
    with WorkerThread([gearmand.address], {func_name: lambda w, j: seen.append(j.data) or b""}):
        assert c_client(gearmand, func_name, b"\xff\xfe", background=True).returncode == 0
        wait_for(lambda: seen, 10, "the foreign job")
        wait_for(lambda: queued(gearmand, func_name) == 0, 10, "the queue to be empty")
    assert seen == [b"\xff\xfe"]


def test_same_unique_can_be_resent_from_one_client(gearmand, func_name):
    client = WireClient([gearmand.address])
    with WorkerThread([gearmand.address], {func_name: echo}):
        first = client.submit(func_name, b"one", unique="same-key", timeout=10)
        second = client.submit(func_name, b"one", unique="same-key", timeout=10)
    assert first.result == second.result == b"one"


def test_uniques_and_function_names_gearmand_mishandles_are_refused(gearmand, func_name):
    client = WireClient([gearmand.address])
    with pytest.raises(BadRequest, match="at most 63 bytes"):
        client.submit(func_name, b"x", unique="u" * 64, background=True)
    with pytest.raises(BadRequest, match="function name"):
        client.submit("f" * (MAX_FUNCTION_BYTES + 1), b"x", background=True)
    request = client.submit(func_name, b"x", unique="u" * 63, background=True, timeout=5)
    assert request.handle


def test_queue_full_is_an_error_not_a_hang(gearmand, func_name):
    from manage_client.admin import AdminClient
    with AdminClient([parse_address(gearmand.address)]) as a:
        a.create_function(func_name)  # maxqueue applies only to a function gearmand knows
        a.maxqueue(func_name, 1)
    client = WireClient([gearmand.address])
    client.submit(func_name, b"first", background=True, timeout=5)
    with pytest.raises(ServerRefused, match="(?i)queue"):
        client.submit(func_name, b"second", background=True, timeout=5)


def test_timed_out_submit_tells_queued_from_never_sent(gearmand, func_name):
    client = WireClient([gearmand.address])
    with pytest.raises(SubmitTimeout) as queued:
        client.submit(func_name, b"nobody serves this", timeout=0.5)
    assert queued.value.handle and "(queued)" in str(queued.value)


def test_no_server_is_server_unavailable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ServerUnavailable):
        WireClient([("127.0.0.1", port)]).submit("f", b"x", timeout=2)


def test_worker_thread_survives_server_death_and_serves_it_again(restartable_gearmand,
                                                                 func_name):
    server = restartable_gearmand
    with WorkerThread([server.address], {func_name: echo}) as thread:
        assert WireClient([server.address]).submit(func_name, b"before", timeout=10).result
        server.kill()
        wait_for(lambda: not thread.worker.connections[0].connected, 5, "the worker to notice")
        server.start()
        request = WireClient([server.address]).submit(func_name, b"after", timeout=10)
        assert request.result == b"after"
        assert thread.thread.is_alive()


def test_worker_works_with_more_than_1024_open_descriptors(gearmand, func_name):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip("cannot raise the descriptor limit above 1200")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        with WorkerThread([gearmand.address], {func_name: echo}) as thread:
            conn = thread.worker.connections[0]
            wait_for(lambda: conn.connected, 5, "the worker to connect")
            assert conn.fileno() >= 1024
            request = WireClient([gearmand.address]).submit(func_name, b"high fd", timeout=10)
        assert request.result == b"high fd"
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
