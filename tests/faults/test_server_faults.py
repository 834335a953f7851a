"""Faults on the server side: a frozen, a crashed and a lost gearmand."""
import json
import signal
import subprocess
import threading
import time

from gearman_frame.errors import JobTimeout, ServerUnavailable
from send_job_client import Job, JobClient

from ..client_helpers import RECORD_TASKS, client_config, ledger_lines
from ..helpers import wait_for
from ..test_admin import RUNADMIN


def recorder(start_workers, servers, tmp_path, **kwargs):
    folder = tmp_path / "plugins_here"
    folder.mkdir(exist_ok=True)
    (folder / "recordtasks.py").write_text(RECORD_TASKS)
    return start_workers(servers, {}, plugins=["recordtasks"], pythonpath=folder, **kwargs)


def test_frozen_server_then_thawed_runs_the_command_once(gearmand, start_workers, tmp_path):
    recorder(start_workers, [gearmand.address], tmp_path)
    _path, config = client_config(tmp_path, [gearmand.address], timeout=1, resend=10)
    ledger = tmp_path / "ledger"
    outcome = []
    gearmand.signal(signal.SIGSTOP)
    try:
        sender = threading.Thread(target=lambda: outcome.append(
            JobClient(config).submit("record", str(ledger), "once")))
        sender.start()
        time.sleep(5)
    finally:
        gearmand.signal(signal.SIGCONT)
    sender.join(20)
    assert outcome and outcome[0].ok
    time.sleep(0.5)
    assert ledger_lines(ledger) == ["once"]


def test_crash_while_a_foreground_client_waits_ends_in_its_result_after_the_restart(
        restartable_gearmand, start_workers, tmp_path):
    server = restartable_gearmand
    recorder(start_workers, [server.address], tmp_path)
    _path, config = client_config(tmp_path, [server.address], timeout=2, resend=10)
    ledger = tmp_path / "ledger"
    outcome = []

    def wait_for_result():
        try:
            outcome.append(JobClient(config).submit("record", str(ledger), "w", sleep=1))
        except (JobTimeout, ServerUnavailable) as err:
            outcome.append(err)
    started = time.monotonic()
    sender = threading.Thread(target=wait_for_result)
    sender.start()
    time.sleep(0.3)
    # When the server dies under the waiting sender and is back 0.5 s later
    server.kill()
    time.sleep(0.5)
    server.start()
    sender.join(40)
    assert time.monotonic() - started < 40 and outcome, "the client hung"
    # Then the sender resent the job (foreground jobs do not survive a restart) and got
    # its result; the command ran at least once, at most once per attempt
    result = outcome[0]
    assert not isinstance(result, Exception), result
    assert result.ok and result.value == "w"
    assert 1 <= len(ledger_lines(ledger)) <= 2 and set(ledger_lines(ledger)) == {"w"}


def test_background_jobs_survive_a_crash_on_the_sqlite_queue(restartable_gearmand,
                                                             start_workers, tmp_path):
    server = restartable_gearmand
    _path, config = client_config(tmp_path, [server.address])
    ledger = tmp_path / "ledger"
    with JobClient(config) as client:
        client.submit_many([Job.of("record", str(ledger), f"j{i}") for i in range(20)],
                           background=True)
    server.kill()
    server.start()
    recorder(start_workers, [server.address], tmp_path)
    wait_for(lambda: len(ledger_lines(ledger)) == 20, 15, "twenty jobs after the restart")
    assert sorted(ledger_lines(ledger)) == sorted(f"j{i}" for i in range(20))


def test_workers_reconnect_idle_and_busy_and_keep_their_names(restartable_gearmand,
                                                              start_workers, tmp_path):
    server = restartable_gearmand
    worker = recorder(start_workers, [server.address], tmp_path, name="steady", threads=2)
    _path, config = client_config(tmp_path, [server.address], timeout=10, resend=0)
    ledger = tmp_path / "ledger"
    with JobClient(config) as client:
        client.submit_background("record", str(ledger), "busy", sleep=2)
    time.sleep(0.5)  # one thread busy, one idle
    server.kill()
    server.start()

    def names():
        proc = subprocess.run([RUNADMIN, "--config", str(_path), "workers", "--json"],
                              capture_output=True, text=True, timeout=30)
        return {row["client_id"] for row in json.loads(proc.stdout or "[]")}
    wait_for(lambda: {"steady.0", "steady.1", "steady.ctl"} <= names(), 15,
             "every thread to reconnect under its name")
    with JobClient(config) as client:
        assert client.submit("reverse", "again").value == "niaga"
    assert "died" not in worker.log() and worker.proc.poll() is None


def test_one_of_three_servers_lost_during_a_batch_loses_nothing(make_gearmand, start_workers,
                                                                tmp_path):
    stable1, lost, stable2 = make_gearmand(), make_gearmand(queue="sqlite"), make_gearmand()
    servers = [stable1.address, lost.address, stable2.address]
    recorder(start_workers, servers, tmp_path, threads=4)
    path, config = client_config(tmp_path, servers, timeout=5, resend=3)
    ledger = tmp_path / "ledger"
    total = 3000
    jobs = [Job.of("record", str(ledger), f"id{i}") for i in range(total)]

    def on_result(_job, _delivery):
        on_result.count += 1
        if on_result.count == total // 3:
            lost.kill()
    on_result.count = 0
    with JobClient(config) as client:
        deliveries = client.submit_many(jobs, background=True, on_result=on_result)
    assert len(deliveries) == total and not any(d.error for d in deliveries)
    lost.start()
    flushed = subprocess.run([RUNADMIN.replace("runadmin", "sendjob"), "--config", str(path),
                              "flush"], capture_output=True, text=True, timeout=60)
    assert flushed.returncode == 0, flushed.stdout + flushed.stderr
    wanted = {f"id{i}" for i in range(total)}
    wait_for(lambda: wanted <= set(ledger_lines(ledger)), 60, "every job to run")
    lines = ledger_lines(ledger)
    duplicates = len(lines) - len(set(lines))
    assert duplicates <= total // 10, f"{duplicates} duplicates"  # at-least-once, bounded


def test_clear_with_its_server_sigkilled_mid_drain_is_one_line_and_exit_3(
        restartable_gearmand, tmp_path):
    """`runadmin clear` whose gearmand is SIGKILLed while it drains: exit 3 and one error
    line, no traceback (four rounds, a function each: the kill lands at a different point
    of the drain each time); nothing lost (every job is in the dump or still queued after
    the restart: the SQLite queue keeps what was not taken)."""
    from gearman_frame.wire import WireClient
    from ..test_admin import queued_total
    server = restartable_gearmand
    path, _config = client_config(tmp_path, [server.address])
    for round_ in range(4):
        function = f"victim{round_}"
        client = WireClient([server.address])
        for number in range(2000):
            client.send(0, function, b"x" * 100, f"u{number}", background=True)
        deadline = time.monotonic() + 30
        while queued_total([server.address], function) < 2000 and time.monotonic() < deadline:
            client.poll(0.05)
        client.close()
        dump = tmp_path / f"dump{round_}.jsonl"
        clearing = subprocess.Popen([RUNADMIN, "--config", str(path), "clear", function,
                                     "--dump", str(dump)], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        wait_for(lambda: dump.exists() and dump.stat().st_size > 1024 * (round_ + 1), 20,
                 "the drain to start")
        server.kill()
        _out, err = clearing.communicate(timeout=60)
        errors = [line for line in err.splitlines() if line.startswith("runadmin:")]
        assert clearing.returncode == 3 and len(errors) == 1 and "Traceback" not in err, err
        server.start()
        dumped = {json.loads(line)["unique"] for line in dump.read_text().splitlines()}
        assert len(dumped) + queued_total([server.address], function) >= 2000
