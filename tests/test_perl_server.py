"""The Perl job server (Debian gearman-server), alone and beside a C gearmand: workers
fall back to GRAB_JOB, failure details travel as WORK_EXCEPTION, senders fall back to the
priorities it has, and the admin uses what it has or says in one line what it lacks."""
import json
import os
import signal
import time

from gearman_frame.addresses import parse_address
from manage_client.admin import AdminClient
from manage_client.drain import read_dump

from .client_helpers import client_config, ledger_lines, sendjob, start_recorder
from .helpers import wait_for
from .test_admin import runadmin

FUNCTIONS = {"say": {"command": ["echo", "{word}"]},
             "raw": {"command": ["cat"], "stdin": "data"},
             "bad": {"shell": "echo oops >&2; exit 3"}}


def _queued(server, function):
    with AdminClient([parse_address(server.address)]) as admin:
        return sum(r.queued for r in admin.status() if r.function == function)


def test_a_worker_serves_a_c_gearmand_and_a_perl_server_together(gearmand, perl_gearmand,
                                                                  start_workers, tmp_path):
    worker = start_workers([gearmand.address, perl_gearmand.address], FUNCTIONS)
    for server in (perl_gearmand, gearmand, perl_gearmand, gearmand):
        path, _config = client_config(tmp_path / server.address.replace(":", "_"),
                                      [server.address], timeout=30, resend=0)
        proc = sendjob(path, "run", "say", "word=hi")
        assert (proc.returncode, proc.stdout) == (0, "hi\n"), proc.stderr
        proc = sendjob(path, "run", "raw", "--data", "bytes\tas they are")
        assert (proc.returncode, proc.stdout) == (0, "bytes\tas they are"), proc.stderr
        started = time.monotonic()
        proc = sendjob(path, "run", "bad")  # the details come as WORK_EXCEPTION on Perl
        assert proc.returncode == 1 and "oops" in proc.stdout + proc.stderr, proc.stderr
        assert "exit code 3" in proc.stderr and time.monotonic() - started < 15  # not 30
    for priority in ("low", "high"):  # Perl has no SUBMIT_JOB_LOW / _HIGH_BG / _LOW_BG
        path, _config = client_config(tmp_path / "perl", [perl_gearmand.address])
        proc = sendjob(path, "run", "say", f"word={priority}", "--priority", priority)
        assert (proc.returncode, proc.stdout) == (0, f"{priority}\n"), proc.stderr
        proc = sendjob(path, "run", "say", "word=bg", "--priority", priority, "--background")
        assert proc.returncode == 0, proc.stderr
    wait_for(lambda: _queued(perl_gearmand, "say") == 0 and _queued(gearmand, "say") == 0,
             10, "no job wedged on either server")
    log = worker.log()
    assert "does not support GRAB_JOB_UNIQ" in log and log.count("ERROR") == 0, log[-2000:]


def test_the_admin_against_the_perl_server(perl_gearmand, start_workers, tmp_path):
    path, _config = client_config(tmp_path, [perl_gearmand.address])
    for word in ("one", "two"):
        assert sendjob(path, "run", "say", f"word={word}", "--background").returncode == 0
    assert sendjob(path, "run", "raw", "--data", "\x01raw", "--background").returncode == 0
    status = runadmin(path, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert {row["function"]: row["queued"] for row in json.loads(status.stdout)
            if row.get("server") != "all"} == {"say": 2, "raw": 1}, status.stdout
    version = runadmin(path, "version")
    assert version.returncode == 0 and version.stdout.split("\t")[1].startswith("v1."), \
        version.stdout + version.stderr
    maxqueue = runadmin(path, "maxqueue", "say", "10")
    assert maxqueue.returncode == 0, maxqueue.stderr
    for command in (["getpid"], ["jobs"], ["cancel", "H:x:1"]):
        proc = runadmin(path, *command)
        assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0, proc.stderr
        assert "is not supported by this job server" in proc.stderr
    dump = tmp_path / "say.jsonl"
    clear = runadmin(path, "clear", "say", "--dump", str(dump))
    assert clear.returncode == 0 and "cleared 2 job(s)" in clear.stdout, clear.stderr
    assert _queued(perl_gearmand, "say") == 0
    jobs, bad = read_dump(dump)
    assert not bad and sorted(json.loads(j["data"])["kwargs"]["word"] for j in jobs) == \
        ["one", "two"]
    worker = start_workers([perl_gearmand.address], FUNCTIONS)
    resend = runadmin(path, "resend", str(dump))
    assert resend.returncode == 0 and "2 queued" in resend.stdout, resend.stdout
    wait_for(lambda: worker.log().count(" ok after ") == 3, 15, "the resent jobs and the raw one")
    workers = runadmin(path, "workers")
    assert workers.returncode == 0 and worker.name in workers.stdout, workers.stdout


def test_an_in_doubt_outbox_job_goes_back_to_the_perl_server_alone_and_runs_once(
        perl_gearmand, start_workers, plugin_dir, tmp_path):
    """The Perl server has no GET_STATUS_UNIQUE: a job in doubt at it is sent to it alone,
    and it merges the copy with the one it still holds."""
    path, _config = client_config(tmp_path, [perl_gearmand.address], timeout=1, resend=1)
    ledger = tmp_path / "ledger"
    start_recorder(start_workers, [perl_gearmand.address], plugin_dir)
    os.kill(perl_gearmand.process.pid, signal.SIGSTOP)
    try:
        proc = sendjob(path, "run", "record", f"ledger={ledger}", "word=once", "sleep=3",
                       "--background")
    finally:
        os.kill(perl_gearmand.process.pid, signal.SIGCONT)
    assert (proc.returncode, proc.stdout.strip()) == (0, "outbox"), proc.stderr
    wait_for(lambda: _running(perl_gearmand, "record"), 10, "the thawed server to hand it out")
    flushed = sendjob(path, "flush")
    assert flushed.returncode == 0 and "1 delivered, 0 waiting" in flushed.stdout, \
        flushed.stdout + flushed.stderr
    wait_for(lambda: ledger_lines(ledger), 15, "the job to finish")
    time.sleep(1.0)
    assert ledger_lines(ledger) == ["once"]


def _running(server, function):
    with AdminClient([parse_address(server.address)]) as admin:
        return any(r.running for r in admin.status() if r.function == function)


def test_a_delayed_job_to_the_perl_server_is_refused_with_the_reason(perl_gearmand, tmp_path):
    """The Perl job server has no SUBMIT_JOB_EPOCH: the sender says so and exits 1; the
    job is not queued to run early."""
    path, _config = client_config(tmp_path, [perl_gearmand.address])
    proc = sendjob(path, "run", "say", "word=later", "--in", "1h")
    assert proc.returncode == 1 and "refused" in proc.stderr, proc.stderr  # 1: it failed
    assert "Traceback" not in proc.stderr and _queued(perl_gearmand, "say") == 0
