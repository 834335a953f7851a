"""Periodic schedules: `sendjob scheduler` (two of them sharing the work through a
gearmand lease), catch_up after no scheduler ran, `runadmin schedules`, and bad config.
Real gearmand, real runworkers, the installed CLIs."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from .client_helpers import SENDJOB, sendjob
from .helpers import wait_for

RUNADMIN = os.path.join(os.path.dirname(sys.executable), "runadmin")


def stamp_function(ledger):
    """``stamp`` appends its job id (``sched:NAME:EPOCH``) to the ledger."""
    return {"stamp": {"shell": f'echo "$GEARMAN_FRAME_JOB_ID" >> {ledger}'}}


def occurrences(ledger):
    """The occurrence epochs the ledger shows, in the order they ran."""
    if not ledger.exists():
        return []
    return [int(line.rsplit(":", 1)[1]) for line in ledger.read_text().split()]


def write_config(folder, server, schedules, functions=None, extra=None):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump({"servers": [server.address], "schedules": schedules,
                                    "functions": functions or {},
                                    "client": {"timeout": 5},
                                    "logging": {"level": "INFO"}, **(extra or {})}))
    return path


class SchedulerProcess:
    def __init__(self, path, label):
        self.log = path.parent / f"scheduler-{label}.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([SENDJOB, "--config", str(path), "scheduler"],
                                         stdout=out, stderr=subprocess.STDOUT,
                                         cwd=path.parent)

    def text(self):
        return self.log.read_text()

    @property
    def active(self):
        return "scheduler: active" in self.text()

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=15)


@pytest.fixture
def schedulers():
    started = []

    def start(path, label):
        started.append(SchedulerProcess(path, label))
        return started[-1]
    yield start
    for scheduler in started:
        scheduler.stop(signal.SIGKILL)


def test_two_schedulers_fire_every_occurrence_once_even_when_the_active_one_is_killed(
        gearmand, start_workers, schedulers, tmp_path):
    ledger = tmp_path / "ledger"
    start_workers([gearmand.address], stamp_function(ledger), threads=2)
    path = write_config(tmp_path / "sched", gearmand,
                        {"tick": {"function": "stamp", "every": 2}})
    started = time.time()
    pair = [schedulers(path, "a"), schedulers(path, "b")]
    wait_for(lambda: any(s.active for s in pair), 10, "one scheduler to be active")
    time.sleep(max(0.0, started + 5 - time.time()))
    active = [s for s in pair if s.active]
    assert len(active) == 1, "both schedulers were active"
    (survivor,) = [s for s in pair if s is not active[0]]
    active[0].stop(signal.SIGKILL)
    killed_at = time.time()
    wait_for(lambda: survivor.active, 10, "the other scheduler to take over")
    assert "taking over" in survivor.text()
    time.sleep(max(0.0, started + 12 - time.time()))
    survivor.stop()
    ended = time.time()
    time.sleep(2.5)  # the last occurrences before the end run at their time
    seen = occurrences(ledger)
    until = [at for at in seen if at <= ended]
    assert len(until) == len(set(until)), f"an occurrence ran twice: {seen}"
    expected = list(range(until[0], int(ended) + 1, 2))
    expected = [at for at in expected if at <= ended]
    assert sorted(until) == expected, f"missing occurrences: {sorted(until)} vs {expected}"
    assert until[0] <= started + 2.5 and any(at > killed_at + 1 for at in until)


@pytest.mark.parametrize("catch_up", ["all", "latest", "none"])
def test_catch_up_after_no_scheduler_ran(gearmand, start_workers, schedulers, tmp_path,
                                         catch_up):
    """The state file says the last occurrence queued was 12 s ago (every 2 s): six were
    missed; catch_up decides which of them run when a scheduler starts."""
    ledger = tmp_path / "ledger"
    start_workers([gearmand.address], stamp_function(ledger))
    path = write_config(tmp_path / "sched", gearmand, {
        "tick": {"function": "stamp", "every": 2, "catch_up": catch_up}})
    time.sleep(2.1 - time.time() % 2)  # just after an occurrence: none passes meanwhile
    now = time.time()
    last = int(now) - 10 - 2
    missed = list(range(last + 2, int(now) + 1, 2))
    assert len(missed) == 6
    state = path.parent / "var" / "schedules.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"through": {"tick": last}}))
    scheduler = schedulers(path, "c")
    wait_for(lambda: scheduler.active, 10, "the scheduler to start")
    time.sleep(1.5)
    past = sorted(at for at in occurrences(ledger) if at <= now)
    assert past == {"all": missed, "latest": missed[-1:], "none": []}[catch_up]
    assert "6 occurrence(s) missed while no scheduler ran" in scheduler.text()


def test_runadmin_schedules_shows_next_and_last_fire_and_the_lease(gearmand, start_workers,
                                                                    schedulers, tmp_path):
    ledger = tmp_path / "ledger"
    start_workers([gearmand.address], stamp_function(ledger))
    path = write_config(tmp_path / "sched", gearmand, {
        "tick": {"function": "stamp", "every": 3},
        "nightly": {"function": "stamp", "cron": "0 6 * * *", "timezone": "Europe/Berlin"}})
    scheduler = schedulers(path, "d")
    wait_for(lambda: len(occurrences(ledger)) >= 1, 10, "a first occurrence")
    proc = subprocess.run([RUNADMIN, "--config", str(path), "schedules", "--json"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["lease"] == gearmand.address
    rows = {row["name"]: row for row in shown["schedules"]}
    assert rows["tick"]["when"] == "every 3s" and rows["tick"]["last"] is not None
    assert int(rows["tick"]["last_job"].rsplit(":", 1)[1]) in occurrences(ledger)
    nightly = time.strptime(rows["nightly"]["next"], "%Y-%m-%dT%H:%M:%SZ")
    assert nightly.tm_min == 0 and nightly.tm_hour in (4, 5)  # 06:00 in Berlin is UTC 4 or 5
    scheduler.stop()
    text = subprocess.run([RUNADMIN, "--config", str(path), "schedules"], capture_output=True,
                          text=True, timeout=30)
    assert "nightly" in text.stdout and "none holds the lease" in text.stdout


@pytest.mark.parametrize("entry, key", [
    ({"function": "f", "cron": "61 * * * *"}, "schedules.bad.cron"),
    ({"function": "f", "cron": "* * *"}, "schedules.bad.cron"),
    ({"function": "f", "every": 0.1}, "schedules.bad.every"),
    ({"function": "f", "every": 5, "timezone": "Mars/Olympus"}, "schedules.bad.timezone"),
    ({"function": "f", "every": 5, "catch_up": "some"}, "schedules.bad.catch_up"),
    ({"function": "f"}, "schedules.bad"),
])
def test_a_bad_schedule_is_exit_2_naming_the_key(gearmand, tmp_path, entry, key):
    path = write_config(tmp_path, gearmand, {"bad": entry})
    proc = sendjob(path, "scheduler", timeout=30)
    assert proc.returncode == 2 and f"{key}:" in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_a_worker_loads_schedules_without_croniter(gearmand, start_workers, tmp_path):
    """runworkers fires no schedule: it reads the section without importing croniter (4
    MiB a process), and a worker with schedules in its config serves as usual."""
    path = write_config(tmp_path, gearmand, {"nightly": {"function": "f", "cron": "0 6 * * *"}})
    code = ("import sys; from gearman_frame.config import load_config; "
            f"c = load_config({str(path)!r}, cron=False); "
            "print(len(c.schedules), 'croniter' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30)
    assert proc.stdout.split() == ["1", "False"], proc.stderr
    ledger = tmp_path / "ledger"
    worker = start_workers([gearmand.address], stamp_function(ledger),
                           extra_config={"schedules": {"nightly": {
                               "function": "stamp", "cron": "0 6 * * *"}}})
    assert "ready" in worker.log()
