"""Fleet-wide caps (functions.NAME.concurrency and .rate), counted in the ledger: real
gearmand, real supervised workers, real commands that record their own start and end
times. Jobs over a cap wait in gearmand (its queue shows them) while other functions
flow; a slot whose holder was SIGKILLed is free once its lease runs out."""
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import yaml

from .browser import browser  # noqa: F401 (a fixture)
from .client_helpers import client_config, sendjob
from .helpers import queued, wait_for
from .web_helpers import serving
from .worker_helpers import RUNWORKERS

BIN = os.path.dirname(sys.executable)


def store(folder, lease=30):
    return {"store": {"url": f"sqlite:///{folder / 'ledger.sqlite'}", "lease": lease}}


def timed(record, then="sleep 1"):
    """A shell step recording ``s TIME PPID`` at its start and ``e TIME`` at its end."""
    return (f"echo s $(date +%s.%N) $PPID >> {record}; {then}; "
            f"echo e $(date +%s.%N) >> {record}")


def events(record):
    rows = [line.split() for line in record.read_text().splitlines()] if record.exists() \
        else []
    return sorted((float(row[1]), row[0]) for row in rows)


def most_at_once(record):
    running = top = 0
    for _, kind in events(record):  # a run cut by a kill has no end: not used there
        running += 1 if kind == "s" else -1
        top = max(top, running)
    return top


def test_concurrency_2_over_two_processes_of_three_threads(gearmand, start_workers, tmp_path,
                                                           browser):
    """Twelve one-second jobs: never more than two run at once (by the commands' own
    clocks), all twelve run once; the ten over the cap wait in gearmand while another
    function's jobs go through; inspect, the exporter and the dashboard show the slots."""
    from selenium.webdriver.common.by import By
    record = tmp_path / "record"
    extra = store(tmp_path)
    functions = {"capped": {"shell": timed(record), "concurrency": 2},
                 "quick": {"command": ["echo", "quick"]}}
    start_workers([gearmand.address], functions, name="capper", threads=3,
                  extra_config=extra, extra_args=["--processes", "2"])
    config, loaded = client_config(tmp_path / "sender", [gearmand.address], timeout=30,
                                   **extra, functions=functions)
    from send_job_client import Job, JobClient
    with JobClient(loaded) as client:  # all twelve at once: none ends before the look
        assert all(d.ok for d in client.submit_many([Job("capped", (), {})
                                                     for _ in range(12)], background=True))
    wait_for(lambda: len(events(record)) >= 2, 15, "two jobs to start")
    assert queued(gearmand, "capped") >= 8  # over the cap: in gearmand, not in a worker
    quick = sendjob(config, "run", "quick")
    assert quick.returncode == 0 and quick.stdout == "quick\n"
    assert queued(gearmand, "capped") >= 6  # it did not wait for the capped backlog

    inspected = subprocess.run([os.path.join(BIN, "runadmin"), "--config", str(config),
                                "inspect", "--all"], capture_output=True, text=True,
                               timeout=30).stdout
    assert "capped: concurrency 2: 2/2 slots held," in inspected, inspected
    per_process = [int(line.split()[-1]) for line in inspected.splitlines()
                   if line.strip().startswith("slots held: capped")]
    assert sum(per_process) == 2, inspected  # the processes' own count agrees

    with serving(config, "exporter") as exporter, serving(config) as web:
        metrics = urllib.request.urlopen(f"{exporter}/metrics", timeout=10).read().decode()
        assert 'gearman_frame_cap_slots{function="capped"} 2.0' in metrics
        assert 'gearman_frame_cap_slots_held{function="capped"} 2.0' in metrics
        waiting = [line for line in metrics.splitlines()
                   if line.startswith('gearman_frame_cap_jobs_waiting{function="capped"}')]
        assert waiting and float(waiting[0].split()[-1]) >= 1
        browser.get(web + "/")

        def held():
            found = browser.find_elements(By.CSS_SELECTOR, 'tr[data-cap="capped"] td.held')
            return found[0].text if found else ""
        wait_for(lambda: held() == "2", 15, "the dashboard's slots held")

    wait_for(lambda: sum(1 for _, k in events(record) if k == "e") == 12, 30,
             "the twelve jobs to end")
    time.sleep(1)
    assert sum(1 for _, k in events(record) if k == "s") == 12
    assert most_at_once(record) == 2


def test_rate_5_per_second_spreads_20_jobs(gearmand, start_workers, tmp_path):
    """Twenty jobs queued at once over two processes of three threads: started at most 5
    a second, so the last starts at least 3.8 s after the first; each runs once."""
    record = tmp_path / "record"
    extra = store(tmp_path)
    functions = {"paced": {"shell": f"date +%s.%N >> {record}", "rate": "5/s"}}
    start_workers([gearmand.address], functions, name="pacer", threads=3,
                  extra_config=extra, extra_args=["--processes", "2"])
    config, _ = client_config(tmp_path / "sender", [gearmand.address], **extra)
    from send_job_client import Job, JobClient
    from gearman_frame.config import load_config
    with JobClient(load_config(config, environ={})) as client:
        client.submit_many([Job("paced", (), {}) for _ in range(20)], background=True)
    wait_for(lambda: record.exists() and len(record.read_text().split()) == 20, 30,
             "the twenty jobs")
    time.sleep(1)
    starts = sorted(float(t) for t in record.read_text().split())
    assert len(starts) == 20
    assert starts[-1] - starts[0] >= 3.8, starts
    assert min(b - a for a, b in zip(starts, starts[1:])) > 0.15  # spaced, not bursts


def test_a_slot_held_by_a_killed_worker_is_free_within_the_lease(gearmand, start_workers,
                                                                  tmp_path):
    """concurrency 1, a 3 s lease: the worker process running the one job is SIGKILLed;
    the slot stays held (nothing starts at once), then is free once the lease ran out,
    and the jobs go on, one at a time."""
    record = tmp_path / "record"
    extra = store(tmp_path, lease=3)
    functions = {"single": {"shell": timed(record, "sleep 5"), "concurrency": 1}}
    for name in ("a", "b"):
        start_workers([gearmand.address], functions, name=name, threads=1,
                      extra_config=extra)
    config, _ = client_config(tmp_path / "sender", [gearmand.address], **extra)
    for _ in range(2):
        assert sendjob(config, "run", "single", "--background").returncode == 0
    wait_for(lambda: events(record), 15, "the first job to start")
    holder = int(record.read_text().split()[2])
    killed_at = time.time()
    os.kill(holder, signal.SIGKILL)
    wait_for(lambda: len([e for e in events(record) if e[1] == "s"]) >= 2, 20,
             "a job to start after the kill")
    restart = [t for t, kind in events(record) if kind == "s"][1]
    assert 1.0 <= restart - killed_at <= 3 + 2.5, restart - killed_at
    wait_for(lambda: sum(1 for e in events(record) if e[1] == "e") == 2, 30,
             "both jobs to end")
    after = [e for e in events(record) if e[0] > killed_at]  # the cut run left no end
    assert [kind for _, kind in after] == ["s", "e", "s", "e"]  # one at a time


def test_bad_caps_are_one_line_exit_2(gearmand, tmp_path):
    """A cap of 0, a malformed rate, and a cap without the ledger: one line naming the
    key, exit 2, for the worker and the sender alike; nothing is sent."""
    for number, (spec, extra, words) in enumerate((
            ({"concurrency": 0}, store(tmp_path), "functions.f.concurrency: expected a "
                                                  "whole number >= 1"),
            ({"rate": "fast"}, store(tmp_path), 'functions.f.rate: expected a rate like '
                                                '"10/s"'),
            ({"rate": "0/s"}, store(tmp_path), "functions.f.rate"),
            ({"concurrency": 2}, {}, "functions.f.concurrency: expected store.url set"))):
        path = tmp_path / f"config-{number}.yaml"
        path.write_text(yaml.safe_dump({"servers": [gearmand.address], **extra,
                                        "functions": {"f": {"command": ["true"], **spec}}}))
        for argv in ([RUNWORKERS, "--config", str(path)],
                     [os.path.join(BIN, "sendjob"), "--config", str(path), "run", "f"]):
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            assert out.returncode == 2, (argv, out.stderr)
            lines = out.stderr.strip().splitlines()
            assert len(lines) == 1 and words in lines[0] and str(path) in lines[0], lines
    assert queued(gearmand, "f") == 0


def test_other_functions_keep_flowing_on_a_thread_that_serves_a_capped_one(
        gearmand, start_workers, tmp_path):
    """One thread serving a capped function whose one slot another worker holds: the
    thread still takes the other function's jobs at once."""
    record = tmp_path / "record"
    extra = store(tmp_path)
    functions = {"held": {"shell": timed(record, "sleep 8"), "concurrency": 1},
                 "free": {"command": ["echo", "free"]}}
    start_workers([gearmand.address], functions, name="holder", threads=1,
                  extra_config=extra)
    config, _ = client_config(tmp_path / "sender", [gearmand.address], timeout=10, **extra)
    assert sendjob(config, "run", "held", "--background").returncode == 0
    wait_for(lambda: events(record), 15, "the capped job to start")
    start_workers([gearmand.address], functions, name="other", threads=1,
                  extra_config=extra)
    assert sendjob(config, "run", "held", "--background").returncode == 0
    results = []
    threads = [threading.Thread(target=lambda: results.append(sendjob(config, "run", "free")))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # the first worker is busy with the capped job: the other took the three
    assert [r.stdout for r in results] == ["free\n"] * 3
    assert len([e for e in events(record) if e[1] == "s"]) == 1  # the second still waits
    assert queued(gearmand, "held") == 1


def test_workflows_and_caps_on_postgresql(gearmand, start_workers, tmp_path, postgres_url):
    """The fleet's ledger: two workers on PostgreSQL run a chord of 12 (its callback once,
    the outcomes in order) and a group of a function capped at 1 (one at a time: the slot
    is taken with SKIP LOCKED), with a rate-limited step between."""
    record, calls = tmp_path / "record", tmp_path / "calls"
    extra = {"store": {"url": postgres_url}}
    functions = {"member": {"shell": "sleep 0.2; echo m{n}"},
                 "total": {"shell": f"echo run >> {calls}; echo {{prev}} | tr '\\n' ,"},
                 "single": {"shell": timed(record, "sleep 0.5"), "concurrency": 1},
                 "paced": {"command": ["echo", "paced"], "rate": "20/s"}}
    for name in ("a", "b"):
        start_workers([gearmand.address], functions, name=name, threads=3,
                      extra_config=extra)
    config, _ = client_config(tmp_path / "sender", [gearmand.address], timeout=30, **extra)
    out = sendjob(config, "chord", *[f"member n={n}" for n in range(12)], "total",
                  timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ",".join(f"m{n}" for n in range(12)) + ","
    out = sendjob(config, "chain", "paced", "single", timeout=120)
    assert out.returncode == 0, out.stderr
    out = sendjob(config, "group", *["single"] * 4, timeout=120)
    assert out.returncode == 0, out.stderr
    time.sleep(1)
    assert [line for line in calls.read_text().splitlines()] == ["run"]
    assert sum(1 for _, kind in events(record) if kind == "s") == 5
    assert most_at_once(record) == 1
