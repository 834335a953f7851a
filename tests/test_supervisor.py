"""The supervised worker fleet: several processes, a dead one replaced, recycling after
max_jobs / max_memory, and Python tasks stopped at their timeout (real gearmand, the
installed `runworkers`)."""
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from .helpers import wait_for
from .worker_helpers import send, send_background, send_in_thread

def serving(server, name):
    """The processes of worker ``name`` connected to ``server`` (by their control
    connections, NAME.pN.ctl or NAME.POOL-pN.ctl)."""
    out = subprocess.run(["gearadmin", "-h", server.host, "-p", str(server.port),
                          "--workers"], capture_output=True, text=True).stdout
    return sorted({word for line in out.splitlines() for word in line.split()
                   if word.startswith(f"{name}.") and word.endswith(".ctl")
                   and word != f"{name}.ctl"})


def test_three_processes_serve_and_a_killed_one_is_replaced(gearmand, start_workers,
                                                            tmp_path):
    pidfile = tmp_path / "ran-by"
    functions = {"slow": {"shell": "echo $PPID > {pidfile}; sleep 1; echo done",
                          "timeout": 30}}
    worker = start_workers([gearmand.address], functions, name="trio", threads=1,
                           extra_args=["--processes", "3"])
    wait_for(lambda: len(serving(gearmand, "trio")) == 3, 10, "three processes")
    assert len(worker.worker_pids()) == 3
    sender = send_in_thread([gearmand.address], "slow", timeout=60,
                            pidfile=str(pidfile))
    results = sender.results
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "the command")
    victim = int(pidfile.read_text())
    assert victim in worker.worker_pids()
    pidfile.unlink()
    os.kill(victim, signal.SIGKILL)
    sender.join(30)
    # the job ran again elsewhere and the sender got its result
    assert results and results[0].ok and results[0].stdout == "done\n"
    assert int(pidfile.read_text()) != victim
    wait_for(lambda: len(worker.worker_pids()) == 3 and victim not in worker.worker_pids(),
             5, "a new process")
    wait_for(lambda: len(serving(gearmand, "trio")) == 3, 5, "three processes serving")
    assert "died (signal SIGKILL); restarting it" in worker.log()


def test_max_jobs_recycles_processes_and_no_job_is_lost_or_run_twice(gearmand, start_workers,
                                                                     plugin):
    worker = start_workers([gearmand.address], {}, name="recycler", threads=1,
                           plugins=["fleettasks"], pythonpath=plugin,
                           worker={"processes": 2, "max_jobs": 5})
    fewest = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            fewest.append(len(worker.worker_pids()))
            time.sleep(0.01)
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        results = [send([gearmand.address], "whoami") for _ in range(30)]
    finally:
        stop.set()
        watcher.join()
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    pids = [r.value for r in results]
    # each process served at most five jobs, so at least six took part
    assert max(pids.count(p) for p in set(pids)) <= 5 and len(set(pids)) >= 6
    assert min(fewest) >= 2  # the replacement starts before the old one leaves
    assert "worker.max_jobs (5) reached" in worker.log()


def test_processes_recycled_while_jobs_run_lose_and_double_nothing(gearmand, start_workers,
                                                                  tmp_path):
    """40 background commands queued at once, two processes of one thread, each recycled
    after 5 jobs: a recycle lands while the other process runs, and while jobs wait in
    gearmand. Each job's command appends its id: every id once, none missing."""
    record = tmp_path / "record"
    worker = start_workers([gearmand.address], {"step": {"command": [
        "sh", "-c", f"sleep 0.05; echo $GEARMAN_FRAME_JOB_ID >> {record}"]}},
        name="recycling", threads=1, worker={"processes": 2, "max_jobs": 5})
    ids = [send_background([gearmand.address], "step") for _ in range(40)]
    wait_for(lambda: record.exists() and len(record.read_text().split()) >= 40, 60,
             "the 40 jobs to run")
    time.sleep(1.0)  # a job run twice would have written again by now
    assert sorted(record.read_text().split()) == sorted(ids)
    assert worker.log().count("worker.max_jobs (5) reached") >= 6


def test_max_memory_recycles_the_process_that_grew(gearmand, start_workers, plugin):
    worker = start_workers([gearmand.address], {}, name="leaky", threads=1,
                           plugins=["fleettasks"], pythonpath=plugin,
                           worker={"max_memory": 120})
    first = send([gearmand.address], "hog", 200)
    assert first.ok
    wait_for(lambda: "over worker.max_memory (120 MiB)" in worker.log(), 5, "the recycle")
    wait_for(lambda: worker.worker_pids() and first.value not in worker.worker_pids(), 10,
             "the leaky process to be gone")
    assert send([gearmand.address], "whoami").value != first.value


def test_a_hung_task_times_out_and_its_process_is_replaced(gearmand, start_workers, plugin):
    worker = start_workers([gearmand.address], {"nap": {"timeout": 1}}, name="sleepy",
                           threads=2, plugins=["fleettasks"], pythonpath=plugin)
    hung_in = worker.worker_pid()
    started = time.monotonic()
    result = send([gearmand.address], "nap", 10)
    # answered at its 1 s timeout, not after the task's 10 s (bounds that hold under load)
    assert result.status == "timeout" and time.monotonic() - started < 8
    assert "timeout of 1s" in result.error
    # the next job is served (by the replacement) within a few seconds, not after 10 s
    started = time.monotonic()
    after = send([gearmand.address], "nap", 0)
    assert after.ok and after.value != hung_in and time.monotonic() - started < 8
    wait_for(lambda: hung_in not in worker.worker_pids(), 5, "the hung process to exit")


def test_a_timed_out_task_is_retried_by_its_policy(gearmand, start_workers, plugin):
    worker = start_workers([gearmand.address], {"nap": {"timeout": 1, "retries": 1,
                                                        "retry_delay": 0.1}},
                           name="again", threads=1, plugins=["fleettasks"],
                           pythonpath=plugin)
    hung_in = worker.worker_pid()
    started = time.monotonic()
    result = send([gearmand.address], "nap", 10)
    assert result.status == "timeout" and result.attempts == 2
    assert 2 <= time.monotonic() - started < 15  # two 1 s timeouts, not two 10 s naps
    # both attempts hang: the process leaves them behind and exits, long before 10 s
    wait_for(lambda: hung_in not in worker.worker_pids(), 4, "the hung process to exit")


def test_shutdown_and_sigterm_stop_every_process(gearmand, start_workers):
    functions = {"echo": {"command": ["echo", "{w}"]}}
    worker = start_workers([gearmand.address], functions, name="duo", threads=1,
                           extra_args=["--processes", "2"])
    wait_for(lambda: len(serving(gearmand, "duo")) == 2, 10, "two processes")
    children = worker.worker_pids()
    runadmin = os.path.join(os.path.dirname(sys.executable), "runadmin")
    done = subprocess.run([runadmin, "--servers", gearmand.address, "shutdown", "duo"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert worker.proc.wait(10) == 0
    assert all(not os.path.exists(f"/proc/{pid}") for pid in children)
    assert serving(gearmand, "duo") == []


def _config_with(worker, functions):
    import yaml
    data = yaml.safe_load(worker.config.read_text())
    data["functions"] = functions
    worker.config.write_text(yaml.safe_dump(data))


def test_sighup_reloads_rolling_and_no_running_job_is_lost(gearmand, start_workers,
                                                           tmp_path):
    """A job running through a SIGHUP reload runs once to its end: its command records
    each start, so a job cut by the reload and run again would leave two lines."""
    starts = tmp_path / "starts"
    functions = {"long": {"command": ["sh", "-c", f"echo start >> {starts}; sleep 3; "
                                                  "echo slept"], "timeout": 30}}
    worker = start_workers([gearmand.address], functions, name="reload", threads=2,
                           extra_args=["--processes", "2"])
    before = set(worker.worker_pids())
    sender = send_in_thread([gearmand.address], "long", timeout=60)
    results = sender.results
    wait_for(lambda: "running (timeout" in worker.log(), 10, "the long job to start")
    _config_with(worker, {**functions, "added": {"command": ["echo", "new {w}"]}})
    worker.proc.send_signal(signal.SIGHUP)
    # the function added is served without a restart, while the long job still runs
    wait_for(lambda: "config reloaded" in worker.log(), 10, "the reload")
    added = send([gearmand.address], "added", w="fn", timeout=20)
    assert added.ok and added.stdout == "new fn\n"
    sender.join(30)
    assert results and results[0].ok and results[0].stdout == "slept\n"
    assert starts.read_text() == "start\n"  # not cut and run again
    # every process was replaced, one by one, and two serve again
    wait_for(lambda: len(worker.worker_pids()) == 2
             and not before & set(worker.worker_pids()), 20, "the rolling replacement")
    wait_for(lambda: len(serving(gearmand, "reload")) == 2, 10, "two processes serving")
    assert worker.proc.poll() is None


def test_sighup_with_a_broken_config_is_refused_and_serving_goes_on(gearmand, start_workers):
    functions = {"echo": {"command": ["echo", "{w}"]}}
    worker = start_workers([gearmand.address], functions, name="stubborn", threads=1)
    pid = worker.worker_pid()
    _config_with(worker, {"echo": {"command": ["echo", "{w}"], "timeout": -5}})
    worker.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in worker.log(), 10, "the refusal")
    line = [ln for ln in worker.log().splitlines() if "reload refused" in ln][0]
    assert "functions.echo.timeout" in line and "expected a number >= 0" in line
    assert send([gearmand.address], "echo", w="still").stdout == "still\n"
    assert worker.worker_pids() == [pid]
    # fixed, and asked through the control function this time
    _config_with(worker, {"echo": {"command": ["echo", "v2 {w}"]}})
    runadmin = os.path.join(os.path.dirname(sys.executable), "runadmin")
    asked = subprocess.run([runadmin, "--servers", gearmand.address, "reload", "stubborn"],
                           capture_output=True, text=True, timeout=30)
    assert asked.returncode == 0 and "ok: reloading" in asked.stdout, asked.stderr
    wait_for(lambda: pid not in worker.worker_pids(), 10, "the process to be replaced")
    assert send([gearmand.address], "echo", w="now").stdout == "v2 now\n"


POOLS = {"slow": {"processes": 1, "threads": 2, "functions": ["slow"]},
         "fast": {"processes": 2, "threads": 1, "functions": ["fast"]}}


def test_pools_keep_a_flood_of_slow_jobs_from_delaying_fast_ones(gearmand, start_workers):
    from .worker_helpers import send_background
    functions = {"slow": {"command": ["sleep", "10"], "timeout": 30},
                 "fast": {"command": ["echo", "quick"]}}
    worker = start_workers([gearmand.address], functions, name="pooled",
                           worker={"pools": POOLS})
    wait_for(lambda: len(serving(gearmand, "pooled")) == 3, 10, "three processes")
    assert serving(gearmand, "pooled") == ["pooled.fast-p1.ctl", "pooled.fast-p2.ctl",
                                           "pooled.slow-p1.ctl"]
    for _ in range(6):
        send_background([gearmand.address], "slow")
    wait_for(lambda: worker.log().count("running (timeout") >= 2, 10, "the slow jobs")
    for _ in range(3):
        started = time.monotonic()
        assert send([gearmand.address], "fast").stdout == "quick\n"
        assert time.monotonic() - started < 6  # not behind a 10 s slow job


@pytest.mark.parametrize("pools, expected", [
    ({"slow": POOLS["slow"]}, "worker.pools: expected every function served by some pool, "
                              "fast in no pool"),
    ({**POOLS, "odd": {"functions": ["nosuch"]}}, "worker.pools.odd.functions"),
    ({"bad name": POOLS["slow"]}, "pool names of letters, digits and _"),
])
def test_pools_that_leave_a_function_out_are_one_error_line(gearmand, tmp_path, pools,
                                                            expected):
    from .worker_helpers import WorkerProcess
    functions = {"slow": {"command": ["true"]}, "fast": {"command": ["true"]}}
    worker = WorkerProcess(tmp_path / "w", [gearmand.address], functions, name="p",
                           worker={"pools": pools})
    assert worker.proc.wait(30) == 2
    log = worker.log()
    assert expected in log and log.count("\n") == 1, log


def test_a_crash_loop_is_restarted_with_growing_pauses(gearmand, start_workers, plugin,
                                                       tmp_path):
    worker = start_workers([gearmand.address], {}, name="crashy", threads=1,
                           plugins=["fleettasks"], pythonpath=plugin)
    result = send([gearmand.address], "crash", str(tmp_path / "count"), timeout=60)
    assert result.ok  # the fourth run, after three deaths, each rerun by gearmand
    log = worker.log()
    assert log.count("died (exit status 70)") == 3
    assert "died (exit status 70); restarting it\n" in log  # the first: at once
    assert "restarting it in 0.5s (crash loop)" in log and "in 1s (crash loop)" in log


def test_max_lifetime_recycles_an_old_process(gearmand, start_workers, plugin):
    worker = start_workers([gearmand.address], {}, name="aging", threads=1,
                           plugins=["fleettasks"], pythonpath=plugin,
                           worker={"max_lifetime": 1.5})
    first = send([gearmand.address], "whoami").value
    wait_for(lambda: "worker.max_lifetime (1.5s) reached" in worker.log(), 5, "the recycle")
    wait_for(lambda: first not in worker.worker_pids(), 5, "the old process to leave")
    assert send([gearmand.address], "whoami").value != first


def test_a_hung_background_task_is_published_and_dead_lettered(gearmand, start_workers,
                                                               plugin):
    from gearman_frame.envelope import Request
    from gearman_frame.wire import WireClient

    from .helpers import queued
    start_workers([gearmand.address], {"nap": {"timeout": 1}}, name="bgnap", threads=1,
                  plugins=["fleettasks"], pythonpath=plugin)
    request = Request(args=(10,), background=True, reply_to="hungchan")
    WireClient([gearmand.address]).submit("nap", request.encode(), unique=request.id,
                                          background=True, timeout=10)
    # its result reaches its channel and the job its dead-letter queue, though the
    # thread that ran it still hangs (both are sent through the process's own client)
    wait_for(lambda: queued(gearmand, "__results__.hungchan") == 1, 5, "the result")
    wait_for(lambda: queued(gearmand, "__dead__.nap") == 1, 5, "the dead letter")
