"""Faults on the worker side: killed workers, suicidal commands, stubborn or escaping ones."""
import signal
import threading
import time

from gearman_frame.envelope import Request
from gearman_frame.wire import WireClient
from manage_client.admin import AdminClient
from send_job_client import JobClient

from ..client_helpers import client_config, ledger_lines
from ..helpers import wait_for
from ..test_veryeasyprocess import pid_gone
from ..worker_helpers import send, send_background, send_in_thread


def status_of(server, function):
    from gearman_frame.addresses import parse_address
    with AdminClient([parse_address(server.address)]) as admin:
        for row in admin.status():
            if row.function == function:
                return row
    return None


def test_sigkilled_worker_background_job_runs_once_on_the_other(gearmand, start_workers,
                                                                 tmp_path):
    ledger, started = tmp_path / "ledger", tmp_path / "started"
    functions = {"job": {"shell": "echo x >> {started}; sleep 2; echo {word} >> {ledger}",
                         "timeout": 30}}
    victim = start_workers([gearmand.address], functions, name="victim", threads=1)
    send_background([gearmand.address], "job", started=str(started), word="once",
                    ledger=str(ledger))
    wait_for(lambda: started.exists(), 10, "the first attempt to start")
    start_workers([gearmand.address], functions, name="survivor", threads=1)
    victim.kill()
    wait_for(lambda: ledger_lines(ledger), 15, "the job to finish on the survivor")
    time.sleep(2.5)  # the killed worker's command group must not finish it too
    assert ledger_lines(ledger) == ["once"]
    assert len(ledger_lines(started)) == 2


def test_command_that_kills_its_worker_is_dropped_after_job_retries(make_gearmand,
                                                                    start_workers, tmp_path):
    server = make_gearmand(extra_args=["--job-retries", "2"])
    functions = {"suicide": {"shell": "kill -9 $PPID; sleep 5", "timeout": 30}}
    workers = [start_workers([server.address], functions, name=f"w{i}", threads=1)
               for i in range(3)]
    _path, config = client_config(tmp_path, [server.address], timeout=30, resend=0)
    started = time.monotonic()
    with JobClient(config) as client:
        result = client.submit("suicide")
    assert result.status == "failed" and "dropped" in result.error
    assert time.monotonic() - started < 30
    time.sleep(0.5)
    deaths = sum(w.log().count("died (signal SIGKILL)") for w in workers)
    assert 1 <= deaths <= 2  # at most --job-retries attempts, then gearmand gave up
    # each killed process was replaced by its supervisor; no endless loop through them
    assert all(w.proc.poll() is None for w in workers)
    assert status_of(server, "suicide").queued == 0


def test_command_ignoring_sigterm_is_killed_after_the_kill_grace(gearmand, start_workers,
                                                                 tmp_path):
    pidfile = tmp_path / "pid"
    start_workers([gearmand.address], {
        "stubborn": {"shell": "trap '' TERM; sleep 30 & echo $! > {pidfile}; wait",
                     "timeout": 0.5}})
    result = send([gearmand.address], "stubborn", pidfile=str(pidfile))
    assert result.status == "timeout"
    wait_for(lambda: pid_gone(int(pidfile.read_text())), 3, "the TERM-proof sleep to die")


def test_stop_grace_ends_with_sigkill_for_stubborn_commands(gearmand, start_workers, tmp_path):
    pidfile = tmp_path / "pid"
    worker = start_workers([gearmand.address], {
        "stubborn": {"shell": "trap '' TERM; echo $$ > {pidfile}; sleep 30", "timeout": 60}},
        grace=1)
    send_background([gearmand.address], "stubborn", pidfile=str(pidfile))
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "the command")
    started = time.monotonic()
    assert worker.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 15  # its 1 s grace, not the command's 30 s
    wait_for(lambda: pid_gone(int(pidfile.read_text())), 3, "the command to be killed")
    wait_for(lambda: status_of(gearmand, "stubborn").queued == 1, 5,
             "gearmand to requeue the job")


def test_daemonizing_command_is_detected_killed_and_reported(gearmand, start_workers, tmp_path):
    pidfile = tmp_path / "pid"
    worker = start_workers([gearmand.address], {
        # the command waits until its child has left the group (its session id is its
        # own pid), so the escape is what is detected, not a leftover in the group
        "daemon": {"shell": "setsid sleep 60 & pid=$!; "
                            "until [ \"$(cut -d' ' -f6 /proc/$pid/stat)\" = $pid ]; do "
                            "sleep 0.01; done; echo $pid > {pidfile}", "timeout": 10}})
    result = send([gearmand.address], "daemon", pidfile=str(pidfile))
    escaped = int(pidfile.read_text())
    assert result.status == "ok" and result.escaped == [escaped]
    wait_for(lambda: pid_gone(escaped), 3, "the escaped daemon to die")
    assert "escaped its process group" in worker.log()


def test_silent_hang_is_killed_and_gearmand_running_count_returns_to_zero(gearmand,
                                                                          start_workers):
    start_workers([gearmand.address], {"silent": {"command": ["sleep", "30"], "timeout": 1}})
    sender = send_in_thread([gearmand.address], "silent")
    results = sender.results
    wait_for(lambda: (status_of(gearmand, "silent") or status_of(gearmand, "x") or 0)
             and status_of(gearmand, "silent").running == 1, 5, "the job to run")
    sender.join(10)
    assert results[0].status == "timeout"
    assert status_of(gearmand, "silent").running == 0


def test_worker_with_over_1024_descriptors_still_works(gearmand, start_workers, tmp_path):
    (tmp_path / "fdhog.py").write_text(
        "import os, resource\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), max(hard, 2048)))\n"
        "HELD = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]\n")
    start_workers([gearmand.address], {"echo": {"command": ["echo", "{w}"]}},
                  plugins=["fdhog"], pythonpath=tmp_path)
    for word in ("a", "b", "c"):
        assert send([gearmand.address], "echo", w=word).stdout == f"{word}\n"


def test_foreground_sender_gets_a_result_when_its_worker_is_sigkilled(gearmand, start_workers,
                                                                      tmp_path):
    functions = {"slow": {"command": ["sleep", "1"], "timeout": 30}}
    victim = start_workers([gearmand.address], functions, name="v", threads=1)
    request = Request()
    client = WireClient([gearmand.address])
    outcome = []
    sender = threading.Thread(target=lambda: outcome.append(
        client.submit("slow", request.encode(), unique=request.id, timeout=30)))
    sender.start()
    wait_for(lambda: status_of(gearmand, "slow") and status_of(gearmand, "slow").running, 5,
             "the job to start")
    victim.kill()
    start_workers([gearmand.address], functions, name="heir", threads=1)
    sender.join(30)
    assert outcome and outcome[0].state == "COMPLETE"
