"""Progress from a shell command's own output (``functions.NAME.progress``): its lines
become WORK_STATUS, seen by `sendjob run --follow` (a bar on a terminal), `sendjob
status`, `runadmin inspect` and the dashboard (real gearmand, the installed CLIs, a
pseudo-terminal, Chromium)."""
import json
import os
import pty
import re
import select
import subprocess
import sys
import time

import yaml

from gearman_frame.daemons.gearmand import free_port
from send_job_client import JobClient

from .browser import browser  # noqa: F401 (a fixture)
from .client_helpers import client_config, sendjob
from .helpers import wait_for

BIN = os.path.dirname(sys.executable)
#: Prints 10% ... 100%, a step every 0.3 s.
STEPS = "for i in 1 2 3 4 5 6 7 8 9 10; do echo $i'0%'; sleep 0.3; done"
#: Prints 10% ... 60% at once, then waits (its last progress stays 60%).
STALLS = "for i in 1 2 3 4 5 6; do echo $i'0%'; done; sleep 60"


def _in_terminal(argv, cwd, timeout=60):
    """Run ``argv`` with stdout and stderr on a pseudo-terminal; (exit code, all it
    wrote)."""
    leader, follower = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100"}
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower,
                            cwd=cwd, env=env)
    os.close(follower)
    seen = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's last writer is gone
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    os.close(leader)
    return proc.wait(10), seen.decode("utf-8", "replace")


def test_follow_on_a_terminal_shows_a_bar_that_moves_and_the_lines_stay(
        gearmand, start_workers, tmp_path):
    start_workers([gearmand.address], {"steps": {"shell": STEPS, "progress": "percent"}},
                  name="stepper", threads=1)
    config, _ = client_config(tmp_path, [gearmand.address], timeout=30)
    code, shown = _in_terminal([os.path.join(BIN, "sendjob"), "--config", str(config), "run",
                                "steps", "--follow"], tmp_path)
    assert code == 0, shown
    # the command's own lines, each once (printed above the bar, which is redrawn)
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown)
    lines = [part[:-1] for part in re.split(r"[\r\n]", plain) if re.fullmatch(r"\d+%", part)]
    assert lines == [str(10 * i) for i in range(1, 11)], shown
    # the bar (rich, on the terminal) drawn at several values, rising
    drawn = [int(n) for n in re.findall(r"(\d+)/100", shown)]
    assert len(set(drawn)) >= 3, shown
    assert drawn == sorted(drawn) and drawn[-1] >= 70, drawn
    assert "━" in shown


def test_piped_follow_shows_no_bar_and_the_api_gets_each_report(gearmand, start_workers,
                                                                tmp_path):
    functions = {
        "steps": {"shell": STEPS, "progress": "percent"},
        # a pattern of its own: two groups, done and total; lines end at \r as well
        "files": {"shell": "for i in 1 2 3 4; do printf 'copied %s of 4 files\\r' $i; "
                           "sleep 0.3; done; echo done",
                  "progress": r"copied (\d+) of (\d+) files"},
        "plain": {"shell": "echo 50%; sleep 0.3; echo 100%"},  # no progress: configured
    }
    start_workers([gearmand.address], functions, name="reporter", threads=2)
    config, loaded = client_config(tmp_path, [gearmand.address], timeout=30)
    piped = sendjob(config, "run", "steps", "--follow")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.split() == [f"{10 * i}%" for i in range(1, 11)]
    assert "/100" not in piped.stderr and "━" not in piped.stderr  # no bar off a terminal
    with JobClient(loaded) as client:
        reports = []
        result = client.submit("files", on_progress=lambda d, t: reports.append((d, t)))
        assert result.ok and "copied 3 of 4 files" in result.stdout  # the lines stay
        assert reports == [(1, 4), (2, 4), (3, 4), (4, 4)]
        plain = []
        assert client.submit("plain", on_progress=lambda d, t: plain.append((d, t))).ok
        assert plain == []  # without progress: configured, its lines are only output


def test_the_last_progress_shows_in_status_inspect_and_the_dashboard(
        gearmand, start_workers, tmp_path, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    start_workers([gearmand.address], {"stalls": {"shell": STALLS, "progress": "percent",
                                                  "timeout": 120}},
                  name="staller", threads=1)
    config, _ = client_config(tmp_path, [gearmand.address])
    queued = sendjob(config, "run", "stalls", "--background", "--json")
    assert queued.returncode == 0, queued.stderr
    job_id = json.loads(queued.stdout)["id"]

    def status():
        out = sendjob(config, "status", job_id, "--json")
        return json.loads(out.stdout) if out.returncode == 0 else {}
    wait_for(lambda: status().get("progress") == "60/100", 15, "the job's last progress")

    inspected = subprocess.run([os.path.join(BIN, "runadmin"), "--config", str(config),
                                "inspect", "staller", "--json"], capture_output=True,
                               text=True, timeout=30)
    running = [job for process in json.loads(inspected.stdout) for job in process["running"]]
    assert [job["progress"] for job in running] == [[60, 100]]
    text = subprocess.run([os.path.join(BIN, "runadmin"), "--config", str(config),
                           "inspect", "staller"], capture_output=True, text=True, timeout=30)
    assert "progress 60/100 (60%)" in text.stdout

    folder = tmp_path / "admin"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump({"servers": [gearmand.address]}))
    port = free_port()
    web = subprocess.Popen([os.path.join(BIN, "runadmin"), "--config",
                            str(folder / "config.yaml"), "web", "--listen",
                            f"127.0.0.1:{port}"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, cwd=folder)
    try:
        assert web.stdout.readline().startswith("dashboard: http://127.0.0.1:")
        browser.get(f"http://127.0.0.1:{port}/")
        bar = wait_for(lambda: browser.find_elements(
            By.CSS_SELECTOR, f'#hosts .job[data-job="{job_id}"] progress'), 15,
            "the job's progress bar")[0]
        assert bar.get_attribute("value") == "60" and bar.get_attribute("max") == "100"
        assert "60/100" in browser.find_element(
            By.CSS_SELECTOR, f'#hosts .job[data-job="{job_id}"]').text
    finally:
        web.terminate()
        web.wait(10)
    cancelled = subprocess.run([os.path.join(BIN, "runadmin"), "--config", str(config),
                                "cancel", job_id], capture_output=True, text=True, timeout=30)
    assert cancelled.returncode == 0, cancelled.stderr


def test_a_bad_progress_setting_is_one_line_naming_the_key(tmp_path):
    for value, says in (("(\\d+", "unterminated"), ("(\\d+)%", "1 group"), (5, "got 5")):
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({"servers": ["127.0.0.1:4730"], "functions": {
            "f": {"shell": "echo 1%", "progress": value}}}))
        out = subprocess.run([os.path.join(BIN, "runworkers"), "--config", str(config)],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 2
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "functions.f.progress" in lines[0] and says in lines[0]
        assert str(config) in lines[0]
