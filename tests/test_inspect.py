"""`runadmin inspect`: each worker process's live state through its control function
(real gearmand, the installed `runworkers` and `runadmin`)."""
import json
import os
import subprocess
import sys
import threading
import time

from .helpers import queued, wait_for
from .worker_helpers import send, send_in_thread

RUNADMIN = os.path.join(os.path.dirname(sys.executable), "runadmin")


def runadmin(server, *args):
    return subprocess.run([RUNADMIN, "--servers", server.address, *args],
                          capture_output=True, text=True, timeout=60)


def inspected(server, *names):
    out = runadmin(server, "inspect", *names, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_inspect_shows_a_running_command_on_its_process_with_elapsed_growing(
        gearmand, start_workers, tmp_path):
    pidfile = tmp_path / "parent"
    functions = {"five": {"shell": "echo $PPID > {pidfile}; sleep 5", "timeout": 30}}
    worker = start_workers([gearmand.address], functions, name="seen", threads=1,
                           extra_args=["--processes", "2"])
    sender = threading.Thread(target=send, args=([gearmand.address], "five"),
                              kwargs={"pidfile": str(pidfile), "timeout": 30})
    sender.start()
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "the command")
    runs_in = int(pidfile.read_text())
    first = inspected(gearmand, "seen")
    assert sorted(p["process"] for p in first) == ["seen.p1", "seen.p2"]
    busy = [p for p in first if p["running"]]
    assert len(busy) == 1 and busy[0]["pid"] == runs_in  # on the right process
    job = busy[0]["running"][0]
    assert job["function"] == "five" and job["timeout"] == 30 and job["attempt"] == 1
    assert job["pid"] and job["pid"] != runs_in  # the command's own process group
    later = [p for p in inspected(gearmand, "seen") if p["running"]][0]["running"][0]
    assert later["job_id"] == job["job_id"] and later["elapsed_s"] > job["elapsed_s"]
    text = runadmin(gearmand, "inspect", "seen").stdout
    assert "running five" in text and "seen.p1: pid" in text and "seen.p2: pid" in text
    sender.join(30)
    assert worker.proc.poll() is None


def test_inspect_counts_exactly_what_ran(gearmand, start_workers):
    functions = {"judge": {"shell": "exit {code}"}}
    start_workers([gearmand.address], functions, name="counted", threads=2)
    outcomes = [send([gearmand.address], "judge", code=c) for c in [0] * 10 + [1] * 3]
    assert [r.ok for r in outcomes].count(True) == 10
    (state,) = inspected(gearmand, "counted")
    counts = state["counters"]["judge"]
    assert counts["ok"] == 10 and counts["failed"] == 3
    assert sum(counts.values()) == 13 and state["durations_s"]["judge"]["count"] == 13
    assert state["running"] == [] and state["rss_mib"] > 5 and state["threads"] == 2


def test_inspect_names_what_it_cannot_find(gearmand, start_workers):
    start_workers([gearmand.address], {"echo": {"command": ["echo"]}}, name="here")
    missing = runadmin(gearmand, "inspect", "here", "gone")
    assert missing.returncode == 1 and "no gearman-frame worker named gone" in missing.stderr
    bare = runadmin(gearmand, "inspect")
    assert bare.returncode == 2 and "--all" in bare.stderr
    assert [p["process"] for p in inspected(gearmand, "--all")] == ["here"]


def _job_id_running(server, name):
    """(job id, command group or None for a task, worker process pid) of the first job
    worker ``name`` runs, once one runs."""
    def found():
        for state in inspected(server, name):
            for job in state["running"]:
                return job["job_id"], job["pid"], state["pid"]
        return None
    return wait_for(found, 10, "a running job")


def test_cancel_stops_a_running_command_at_once(gearmand, start_workers, tmp_path):
    from .test_veryeasyprocess import pid_gone
    functions = {"long": {"command": ["sleep", "30"], "timeout": 60, "retries": 2}}
    start_workers([gearmand.address], functions, name="stoppable", threads=1)
    sender = send_in_thread([gearmand.address], "long", timeout=60)
    results = sender.results
    job_id, group, _worker = wait_for(lambda: (lambda j: j if j[1] else None)(
        _job_id_running(gearmand, "stoppable")), 10, "the command's group")
    started = time.monotonic()
    cancelled = runadmin(gearmand, "cancel", job_id)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout, cancelled.stderr
    sender.join(10)
    assert time.monotonic() - started < 15  # not the command's 30 s
    assert results and results[0].status == "cancelled" and results[0].attempts == 1
    assert pid_gone(group)
    assert queued(gearmand, "__dead__.long") == 0  # never dead-lettered


def test_cancel_of_a_running_task_replaces_its_process(gearmand, start_workers, plugin):
    worker = start_workers([gearmand.address], {}, name="taskstop", threads=2,
                           plugins=["fleettasks"], pythonpath=plugin)
    sender = send_in_thread([gearmand.address], "nap", 20, timeout=60)
    results = sender.results
    job_id, pid, process = _job_id_running(gearmand, "taskstop")
    assert pid is None  # a task runs in-process
    assert runadmin(gearmand, "cancel", job_id).returncode == 0
    sender.join(10)
    assert results and results[0].status == "cancelled"
    wait_for(lambda: process not in worker.worker_pids() and worker.worker_pids(), 10,
             "its process to be replaced")
    assert send([gearmand.address], "whoami").value != process


def test_cancel_of_a_job_nothing_runs_is_not_found(gearmand, start_workers):
    start_workers([gearmand.address], {"echo": {"command": ["echo"]}}, name="idle")
    missing = runadmin(gearmand, "cancel", "0123456789abcdef0123456789abcdef")
    assert missing.returncode == 1 and "not found" in missing.stderr
