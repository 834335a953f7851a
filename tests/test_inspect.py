"""`runadmin inspect`: each worker process's live state through its control function
(real gearmand, the installed `runworkers` and `runadmin`)."""
import json
import os
import subprocess
import sys
import threading

from .helpers import wait_for
from .worker_helpers import send

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
