"""runworkers against real gearmand and real commands: results, retries, safety, stopping."""
import os
import shutil
import signal
import subprocess
import textwrap
import time

import pytest

from gearman_frame.envelope import Request
from gearman_frame.queues import control_function, dead_letter_function, read_dead_letter
from gearman_frame.wire import WireClient

from .helpers import function_status, queued, wait_for
from .test_veryeasyprocess import pid_gone
from .wire_helpers import WorkerThread
from .worker_helpers import send, send_background, send_in_thread

GEARMAN = shutil.which("gearman")
TASKS = textwrap.dedent('''
    from gearman_frame.tasks import task

    @task("boom")
    def boom():
        raise RuntimeError("kaput")

    @task("nothing")
    def nothing():
        return None

    @task("raw_bytes")
    def raw_bytes():
        return b"bytes"

    @task("reverse")
    def reverse(text):
        return text[::-1]
''')


def test_command_result_carries_output_and_timeout_kills_the_group(gearmand, start_workers,
                                                                   tmp_path):
    pidfile = tmp_path / "grandchild"
    start_workers([gearmand.address], {
        "echo": {"command": ["echo", "{word}"]},
        "hang": {"shell": "sleep 60 & echo $! > {pidfile}; sleep 60", "timeout": 0.5},
        "die": {"shell": "kill -9 $$"},
    })
    ok = send([gearmand.address], "echo", word="héllo")
    assert (ok.status, ok.stdout, ok.exit_code, ok.attempts) == ("ok", "héllo\n", 0, 1)
    started = time.monotonic()
    hung = send([gearmand.address], "hang", pidfile=str(pidfile))
    assert hung.status == "timeout" and time.monotonic() - started < 15  # not 60 s
    assert "timed out" in hung.error
    wait_for(lambda: pid_gone(int(pidfile.read_text())), 3, "the background sleep to die")
    died = send([gearmand.address], "die")
    assert (died.status, died.signal, died.exit_code) == ("failed", 9, None)


def test_retries_until_success_then_dead_letter_when_exhausted(gearmand, start_workers,
                                                               tmp_path):
    counter = tmp_path / "count"
    start_workers([gearmand.address], {
        "flaky": {"shell": "n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); "
                           "echo $n > {counter}; [ $n -ge 3 ]",
                  "retries": 2, "retry_delay": 0.05},
        "broken": {"command": ["false"], "retries": 1, "retry_delay": 0.05},
        "loud": {"shell": "echo out-{n}; echo err-{n} >&2; exit 3", "retries": 1,
                 "retry_delay": 0.05},
        "shot": {"shell": "echo before; kill -TERM $$", "retries": 1, "retry_delay": 0.05},
    })
    # a final failure, after its retries, reaches the foreground sender whole
    failed = send([gearmand.address], "loud", n="7")
    assert (failed.status, failed.attempts, failed.exit_code) == ("failed", 2, 3)
    assert (failed.stdout, failed.stderr) == ("out-7\n", "err-7\n")
    assert "exit code 3" in failed.error
    killed = send([gearmand.address], "shot")
    assert (killed.status, killed.attempts, killed.signal) == ("failed", 2, 15)
    assert killed.exit_code is None and killed.stdout == "before\n"
    result = send([gearmand.address], "flaky", counter=str(counter))
    assert (result.status, result.attempts) == ("ok", 3)
    assert counter.read_text().strip() == "3"

    job_id = send_background([gearmand.address], "broken")
    dead = dead_letter_function("broken")
    wait_for(lambda: queued(gearmand, dead) == 1, 10, "the dead letter")
    records = []
    with WorkerThread([gearmand.address], {dead: lambda w, j: records.append(j.data) or b""}):
        wait_for(lambda: records, 10, "the dead letter to be read")
    record = read_dead_letter(records[0])
    assert record["function"] == "broken" and record["unique"] == job_id
    assert Request.decode(record["data"]).id == job_id
    assert record["result"]["attempts"] == 2 and record["result"]["exit_code"] == 1


@pytest.mark.parametrize("value", ["; touch pwned", "$(touch pwned)", "`touch pwned`",
                                   "a\ntouch pwned", "' ; touch pwned '"])
def test_template_values_are_never_executed(gearmand, start_workers, tmp_path, value):
    worker = start_workers([gearmand.address], {
        "argv": {"command": ["printf", "%s", "{v}"]},
        "quoted": {"shell": "printf %s {v}"},
    })
    for function in ("argv", "quoted"):
        result = send([gearmand.address], function, v=value)
        assert (result.status, result.stdout) == ("ok", value)
    assert not (worker.folder / "pwned").exists()


def test_missing_or_extra_fields_fail_without_running(gearmand, start_workers, tmp_path):
    marker = tmp_path / "ran"
    start_workers([gearmand.address], {"mark": {"command": ["touch", str(marker), "{a}"]}})
    missing = send([gearmand.address], "mark")
    extra = send([gearmand.address], "mark", a="x", b="y")
    assert (missing.status, missing.attempts) == ("error", 0)
    assert "missing template field(s): a" in missing.error
    assert "not in the template: b" in extra.error
    nul = send([gearmand.address], "mark", a="x\0y")  # would run `touch ... x` if cut short
    assert (nul.status, nul.attempts) == ("error", 0) and "NUL byte" in nul.error
    assert not marker.exists()


@pytest.mark.needs_tool("gearman")
def test_c_client_gets_raw_output_and_foreign_bytes_fail_cleanly(gearmand, start_workers):
    start_workers([gearmand.address], {"upper": {"command": ["tr", "a-z", "A-Z"], "stdin": "data"},
                                       "argv_only": {"command": ["true"]}})
    base = [GEARMAN, "-h", gearmand.host, "-p", str(gearmand.port)]
    proc = subprocess.run(base + ["-f", "upper"], input=b"hello \xff", capture_output=True,
                          timeout=20)
    assert (proc.returncode, proc.stdout) == (0, b"HELLO \xff")
    subprocess.run(base + ["-b", "-f", "argv_only"], input=b"\xff\xfe", check=True, timeout=20)
    wait_for(lambda: function_status(gearmand, "argv_only") is not None
             and queued(gearmand, "argv_only") == 0, 10, "the foreign job to be done")
    time.sleep(0.3)
    assert queued(gearmand, "argv_only") == 0
    assert send([gearmand.address], "upper", "still alive").stdout == "STILL ALIVE"


def test_python_task_errors_become_failed_results_and_the_thread_goes_on(gearmand,
                                                                         start_workers,
                                                                         tmp_path):
    (tmp_path / "testtasks.py").write_text(TASKS)
    start_workers([gearmand.address], {}, threads=1, plugins=["testtasks"], pythonpath=tmp_path)
    servers = [gearmand.address]
    raised = send(servers, "boom")
    assert raised.status == "failed" and "RuntimeError: kaput" in raised.error
    assert "Traceback" in raised.stderr
    assert "returned None" in send(servers, "nothing").error
    assert "returned bytes" in send(servers, "raw_bytes").error
    assert send(servers, "reverse", "abc").value == "cba"  # the one thread goes on


def test_sigterm_lets_the_running_command_finish(gearmand, start_workers):
    worker = start_workers([gearmand.address], {"nap": {"command": ["sleep", "2"]}})
    sender = send_in_thread([gearmand.address], "nap")
    results = sender.results
    wait_for(lambda: "running (timeout" in worker.log(), 10, "the command to start")
    assert worker.stop(signal.SIGTERM) == 0
    sender.join(10)
    assert results and results[0].status == "ok"


def test_control_shutdown_stops_the_worker(gearmand, start_workers):
    worker = start_workers([gearmand.address], {"t": {"command": ["true"]}}, name="ctl-me")
    WireClient([gearmand.address]).submit(control_function("ctl-me"), b"shutdown",
                                          priority="high", timeout=10)
    assert worker.proc.wait(10) == 0
    assert "shutdown job" in worker.log()


def test_second_signal_forces_and_the_job_is_requeued(gearmand, start_workers):
    worker = start_workers([gearmand.address], {"long": {"command": ["sleep", "30"]}},
                           grace=60)
    send_background([gearmand.address], "long")
    wait_for(lambda: "running (timeout" in worker.log(), 10, "the command to start")
    worker.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert worker.proc.poll() is None  # still inside its grace period
    worker.proc.send_signal(signal.SIGINT)
    assert worker.proc.wait(10) == 0
    assert queued(gearmand, "long") == 1  # gearmand will give it to the next worker


def test_worker_reconnects_after_gearmand_restart(restartable_gearmand, start_workers):
    server = restartable_gearmand
    worker = start_workers([server.address], {"echo": {"command": ["echo", "{w}"]}})
    assert send([server.address], "echo", w="before").ok
    server.kill()
    server.start()
    wait_for(lambda: "reconnected" in worker.log(), 10, "the worker to reconnect")
    assert send([server.address], "echo", w="after").stdout == "after\n"
    assert worker.proc.poll() is None


def test_with_two_servers_one_down_jobs_flow_on_the_other(make_gearmand, start_workers):
    first, second = make_gearmand(), make_gearmand()
    start_workers([first.address, second.address], {"echo": {"command": ["echo", "{w}"]}})
    first.stop()
    for i in range(5):
        assert send([second.address], "echo", w=str(i)).stdout == f"{i}\n"


def _keeper_pid(worker):
    out = subprocess.run(["pgrep", "-f", f"gearman-frame-keeper .*worker-{worker.name} "],
                         capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else None


@pytest.mark.parametrize("keeper_survives", [True, False])
def test_sigkilled_worker_leaves_no_command_and_its_job_goes_to_another(
        gearmand, start_workers, tmp_path, keeper_survives):
    pidfile = tmp_path / "pid"
    functions = {"slowjob": {"shell": "echo $$ > {pidfile}; sleep 30; echo done",
                             "timeout": 60}}
    victim = start_workers([gearmand.address], functions, name="victim", threads=1)
    sender = send_in_thread([gearmand.address], "slowjob", timeout=60,
                            pidfile=str(pidfile))
    results = sender.results
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "the command")
    command_pid = int(pidfile.read_text())
    if not keeper_survives:  # the worst case: keeper and worker killed together
        os.kill(_keeper_pid(victim), signal.SIGKILL)
    victim.kill()
    if keeper_survives:
        # The keeper kills the dead worker's command group at once
        wait_for(lambda: pid_gone(command_pid), 3, "the keeper to kill the command")
    else:
        time.sleep(0.5)
        assert not pid_gone(command_pid)  # nobody left to kill it ...
    # ... until a worker of the same name starts in the same folder: it sweeps the group
    # the dead one left, and takes the requeued job.
    functions["slowjob"]["shell"] = ": {pidfile}; echo done"
    from .worker_helpers import WorkerProcess
    heir = WorkerProcess(victim.folder, [gearmand.address], functions, name="victim").wait_ready()
    try:
        wait_for(lambda: pid_gone(command_pid), 5, "the orphaned command group to be killed")
        sender.join(30)
        assert results and results[0].stdout == "done\n"
    finally:
        heir.kill()


def test_long_commands_report_progress(gearmand, start_workers):
    start_workers([gearmand.address], {"nap": {"command": ["sleep", "1.2"],
                                                "timeout": 30}})
    request = Request(kwargs={})
    sent = WireClient([gearmand.address]).submit("nap", request.encode(), unique=request.id,
                                                 timeout=20)
    assert sent.state == "COMPLETE"
    assert sent.status["numerator"] >= 1 and sent.status["denominator"] == 30


def test_commands_see_their_job_id(gearmand, start_workers):
    start_workers([gearmand.address], {"whoami": {"shell": 'printf %s "$GEARMAN_FRAME_JOB_ID"'}})
    result = send([gearmand.address], "whoami")
    assert result.ok and result.stdout == result.id


def test_a_left_behind_process_is_killed_and_reaped_no_zombie_stays(gearmand, start_workers,
                                                                   tmp_path):
    """The shell exits at once; the background sleep it leaves is killed with the group,
    re-parented to the worker (a subreaper) and reaped by it, not left a zombie."""
    pidfile = tmp_path / "leftover"
    start_workers([gearmand.address], {"leave": {"shell": "sleep 30 & echo $! > {pidfile}"}})
    result = send([gearmand.address], "leave", pidfile=str(pidfile))
    assert result.ok
    leftover = int(pidfile.read_text())
    wait_for(lambda: not os.path.exists(f"/proc/{leftover}"), 5,
             "the left-behind sleep to be killed and reaped (no zombie)")


def test_the_os_posix_spawn_path_runs_commands_alike(gearmand, start_workers, monkeypatch):
    # the simpler spawn path (GEARMAN_FRAME_SPAWN=os) the benchmark sets against ctypes
    monkeypatch.setenv("GEARMAN_FRAME_SPAWN", "os")
    start_workers([gearmand.address], {"echo": {"shell": "echo {w}; echo err >&2; exit 3"}})
    result = send([gearmand.address], "echo", w="via os")
    assert result.exit_code == 3 and result.stdout == "via os\n" and result.stderr == "err\n"
