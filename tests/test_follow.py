"""`sendjob run --follow`: a command's output shown while it runs, then how it ended
(real gearmand, the installed `runworkers` and `sendjob`)."""
import os
import subprocess
import sys
import time

from .client_helpers import client_config

SENDJOB = os.path.join(os.path.dirname(sys.executable), "sendjob")


def test_follow_shows_each_line_as_it_comes_then_the_result(gearmand, start_workers,
                                                             tmp_path):
    functions = {"ticker": {"shell": "for i in 1 2 3; do echo line $i; sleep 1; done; "
                                     "echo oops >&2; exit 2", "timeout": 30}}
    start_workers([gearmand.address], functions, name="talker", threads=1)
    config, _ = client_config(tmp_path, [gearmand.address])
    started = time.monotonic()
    proc = subprocess.Popen([SENDJOB, "--config", str(config), "run", "ticker", "--follow"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    arrivals = []
    for line in proc.stdout:
        arrivals.append((time.monotonic() - started, line.decode()))
    stderr = proc.stderr.read().decode()
    assert proc.wait(30) == 1
    assert [text for _t, text in arrivals] == ["line 1\n", "line 2\n", "line 3\n"]
    # each line arrived while the command ran (it sleeps 1 s after each), not all at the
    # end: the first well before the last
    assert arrivals[-1][0] - arrivals[0][0] > 1.0, arrivals
    assert "oops" in stderr and "failed" in stderr.splitlines()[-1]
    assert stderr.count("line") == 0  # stdout was not printed a second time


def test_follow_is_refused_with_background_and_the_json_result_still_comes(
        gearmand, start_workers, tmp_path):
    start_workers([gearmand.address], {"echo": {"command": ["echo", "{w}"]}}, name="e")
    config, _ = client_config(tmp_path, [gearmand.address])
    refused = subprocess.run([SENDJOB, "--config", str(config), "run", "echo", "w=x",
                              "--follow", "--background"], capture_output=True, text=True,
                             cwd=tmp_path, timeout=30)
    assert refused.returncode == 2 and "--follow" in refused.stderr
    shown = subprocess.run([SENDJOB, "--config", str(config), "run", "echo", "w=hi",
                            "--follow", "--json"], capture_output=True, text=True,
                           cwd=tmp_path, timeout=30)
    assert shown.returncode == 0
    assert shown.stdout.startswith("hi\n") and '"status":"ok"' in shown.stdout


def test_a_task_reports_progress_that_sendjob_status_shows(gearmand, start_workers, plugin,
                                                           tmp_path):
    import json
    start_workers([gearmand.address], {}, name="stepper", threads=1,
                  plugins=["fleettasks"], pythonpath=plugin)
    config, _ = client_config(tmp_path, [gearmand.address])
    queued = subprocess.run([SENDJOB, "--config", str(config), "run", "steps", "--arg", "4",
                             "--background", "--json"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=30)
    job_id = json.loads(queued.stdout)["id"]
    seen = set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        state = json.loads(subprocess.run(
            [SENDJOB, "--config", str(config), "status", job_id, "--json"],
            capture_output=True, text=True, cwd=tmp_path, timeout=30).stdout)
        if state["state"] != "running" and seen:
            break
        if "progress" in state:
            seen.add(state["progress"])
    # progress moves while the task runs: one value alone would pass for a fixed answer
    assert len(seen) >= 2 and seen <= {"1/4", "2/4", "3/4", "4/4"}, seen
