"""JobClient and sendjob against real gearmand and real workers: nothing lost, nothing twice."""
import signal
import subprocess
import time

import pytest

from gearman_frame.errors import JobTimeout, ServerUnavailable, UsageError
from gearman_frame.daemons.gearmand import free_port
from send_job_client import OUTBOX, Job, JobClient
from send_job_client.outbox import Outbox

from .client_helpers import (SENDJOB, client_config, fill_outbox_while_down, ledger_lines,
                             sendjob, start_recorder)
from .helpers import wait_for
from .test_admin import queued_total


def test_foreground_background_and_many(gearmand, start_workers, plugin_dir, tmp_path):
    start_recorder(start_workers, [gearmand.address], plugin_dir, threads=4)
    _path, config = client_config(tmp_path, [gearmand.address])
    ledger = tmp_path / "ledger"
    with JobClient(config) as client:
        assert client.submit("reverse", "abc").value == "cba"
        delivery = client.submit_background("record", str(ledger), "bg")
        assert delivery.handle.startswith("H:") and not delivery.outbox
        assert delivery.server == str(gearmand.address)
        wait_for(lambda: ledger_lines(ledger) == ["bg"], 10, "the background job")
        results = client.submit_many([Job.of("reverse", f"n{i}") for i in range(1000)])
    assert [r.value for r in results] == [f"n{i}"[::-1] for i in range(1000)]
    assert all(r.ok for r in results)


def test_a_large_batch_is_on_its_way_before_it_is_all_encoded(gearmand, tmp_path):
    """submit_many sends a batch's first jobs, then encodes the rest: a worker starts on
    them at once instead of waiting for the whole batch to be encoded (and signed)."""
    _path, config = client_config(tmp_path, [gearmand.address])
    queued_when_encoding = []

    def jobs():
        for i in range(600):
            if i == 400:
                queued_when_encoding.append(wait_for(
                    lambda: queued_total([gearmand.address], "later") or None, 5,
                    "the batch's first jobs on gearmand"))
            yield Job.of("later", i=i)

    with JobClient(config) as client:
        deliveries = client.submit_many(jobs(), background=True)
    assert all(d.handle and not d.outbox for d in deliveries)
    assert queued_when_encoding[0] and 0 < queued_when_encoding[0] < 400
    assert queued_total([gearmand.address], "later") == 600


def test_high_priority_overtakes_queued_normal_jobs(gearmand, start_workers, plugin_dir,
                                                    tmp_path):
    _path, config = client_config(tmp_path, [gearmand.address])
    ledger = tmp_path / "ledger"
    with JobClient(config) as client:
        for i in range(5):
            client.submit_background("record", str(ledger), f"normal{i}")
        client.submit_background("record", str(ledger), "urgent", priority="high")
    start_recorder(start_workers, [gearmand.address], plugin_dir, threads=1)
    wait_for(lambda: len(ledger_lines(ledger)) == 6, 15, "all six jobs")
    assert ledger_lines(ledger)[0] == "urgent"


def test_slow_job_with_short_timeout_is_resent_but_runs_once(gearmand, start_workers,
                                                             plugin_dir, tmp_path, caplog):
    """A 3 s job with a 1 s timeout is resent (the sender says so) and runs once: a second
    run started by a resend would write its line 3 s after that resend, so the ledger is
    read only after the last resend's run would have ended."""
    start_recorder(start_workers, [gearmand.address], plugin_dir, threads=2)
    _path, config = client_config(tmp_path, [gearmand.address], timeout=1, resend=3)
    ledger = tmp_path / "ledger"
    with caplog.at_level("INFO", logger="gearman_frame.sending.dispatch"), \
            JobClient(config) as client:
        result = client.submit("record", str(ledger), "once", sleep=3)
    assert result.ok and result.value == "once"
    resends = [r for r in caplog.records if "resending" in r.getMessage()]
    assert resends, "the job was never resent: the test would prove nothing"
    time.sleep(3.5)  # the latest resend was before the answer: its run would end by now
    assert ledger_lines(ledger) == ["once"]


def test_first_server_dead_job_goes_through_the_second(make_gearmand, start_workers,
                                                       plugin_dir, tmp_path):
    dead = f"127.0.0.1:{free_port()}"
    alive = make_gearmand()
    start_recorder(start_workers, [alive.address], plugin_dir)
    _path, config = client_config(tmp_path, [dead, alive.address])
    with JobClient(config) as client:
        results = [client.submit("reverse", f"w{i}") for i in range(4)]
    assert [r.value for r in results] == ["0w", "1w", "2w", "3w"]


def test_no_worker_is_a_timeout_naming_the_function(gearmand, tmp_path):
    path, config = client_config(tmp_path, [gearmand.address], timeout=0.3, resend=1)
    with JobClient(config) as client, pytest.raises(JobTimeout) as info:
        client.submit("nobody_serves_this")
    assert "'nobody_serves_this'" in str(info.value) and len(info.value.attempts) == 2
    proc = sendjob(path, "run", "nobody_serves_this", "--timeout", "0.3")
    assert proc.returncode == 1 and "nobody_serves_this" in proc.stderr


def test_no_server_foreground_exits_3(tmp_path):
    path, config = client_config(tmp_path, [f"127.0.0.1:{free_port()}"], resend=1)
    with JobClient(config) as client, pytest.raises(ServerUnavailable):
        client.submit("reverse", "x")
    assert sendjob(path, "run", "reverse", "--arg", "x").returncode == 3


def test_outbox_keeps_jobs_until_flush_delivers_them_once(restartable_gearmand, start_workers,
                                                          plugin_dir, tmp_path):
    server = restartable_gearmand
    path, config = client_config(tmp_path, [server.address], resend=1)
    ledger = tmp_path / "ledger"
    server.stop()
    # Given every server down, a background job is kept, not lost
    proc = sendjob(path, "run", "record", f"ledger={ledger}", "word=kept", "--background")
    assert (proc.returncode, proc.stdout.strip()) == (0, OUTBOX)
    outbox = Outbox(config.resolve(config.client.outbox))
    assert len(outbox) == 1
    # When the server and a worker are back, flush delivers it exactly once
    server.start()
    start_recorder(start_workers, [server.address], plugin_dir)
    flushed = sendjob(path, "flush")
    assert flushed.returncode == 0 and "1 delivered, 0 waiting" in flushed.stdout
    wait_for(lambda: ledger_lines(ledger) == ["kept"], 10, "the kept job to run")
    assert len(outbox) == 0


def test_interrupted_flush_never_delivers_a_job_twice(restartable_gearmand, start_workers,
                                                      plugin_dir, tmp_path):
    """A flush SIGKILLed between its batches (1,600 jobs: four batches of 500), then a
    second flush: every job runs exactly once. The worker runs from the start, so a job
    delivered twice would run twice: gearmand coalesces a copy only while the first is
    still queued or running, and the batch the kill cut (queued by gearmand, still in
    the outbox) is sent again after many of its jobs ran. The job ledger (store.url) is
    what answers those copies without running them; without it about 100 of them ran
    twice here."""
    server = restartable_gearmand
    path, config = client_config(tmp_path, [server.address], resend=0)
    ledger = tmp_path / "ledger"
    count = 1600
    fill_outbox_while_down(server, config, ledger, count)
    start_recorder(start_workers, [server.address], plugin_dir, threads=4,
                   extra_config={"store": {"url": f"sqlite:///{tmp_path / 'jobs.sqlite'}"}})
    # When a flush is killed half way and another one finishes the work
    first = subprocess.Popen([SENDJOB, "--config", str(path), "flush"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    outbox = Outbox(config.resolve(config.client.outbox))
    wait_for(lambda: len(outbox) <= count - 500, 30, "the first flush to deliver a batch")
    first.send_signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL  # it was still flushing
    assert len(outbox) > 0, "the first flush had finished: the kill proves nothing"
    assert sendjob(path, "flush").returncode == 0
    # Then every job runs exactly once
    wait_for(lambda: len(ledger_lines(ledger)) >= count, 60, "every job")
    time.sleep(1.0)  # a late copy would be run by now
    assert sorted(ledger_lines(ledger)) == sorted(f"job{i}" for i in range(count))


def test_bad_key_value_exits_2(tmp_path):
    path, _config = client_config(tmp_path, ["127.0.0.1:1"])
    for bad in (["novalue"], ["=x"], ["a b=1"], ["j={not json"], ["a=1", "a=2"]):
        proc = sendjob(path, "run", "f", *bad)
        assert proc.returncode == 2, (bad, proc.stderr)
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_typed_values_reach_the_task(gearmand, start_workers, plugin_dir, tmp_path):
    start_recorder(start_workers, [gearmand.address], plugin_dir)
    path, _config = client_config(tmp_path, [gearmand.address])
    proc = sendjob(path, "run", "reverse", "--arg", '"123"', "--json")
    assert proc.returncode == 0 and '"value":"321"' in proc.stdout


def test_plugin_that_raises_exits_1_and_reports_what_was_sent(gearmand, start_workers,
                                                               plugin_dir, tmp_path):
    (plugin_dir / "breaks.py").write_text(
        "from send_job_client import Job\n"
        "def jobs(args, config):\n"
        "    yield Job.of('reverse', 'a')\n"
        "    yield Job.of('reverse', 'b')\n"
        "    raise ValueError('bad input file')\n")
    start_recorder(start_workers, [gearmand.address], plugin_dir)
    path, _config = client_config(tmp_path, [gearmand.address])
    proc = sendjob(path, "plugin", "breaks", env={"PYTHONPATH": str(plugin_dir)})
    assert proc.returncode == 1
    assert "bad input file" in proc.stderr and "after sending 2 job(s) (2 ok" in proc.stderr


def test_unknown_plugin_exits_2(tmp_path):
    path, _config = client_config(tmp_path, ["127.0.0.1:1"])
    proc = sendjob(path, "plugin", "no_such_plugin")
    assert proc.returncode == 2 and "unknown plugin 'no_such_plugin'" in proc.stderr


def test_example_plugins_run_end_to_end(gearmand, start_workers, tmp_path):
    start_workers([gearmand.address], {"store_numbers": {"retries": 3, "retry_delay": 0.05}},
                  plugins=["plugins.eg", "plugins.store_numbers"], threads=3)
    path, _config = client_config(tmp_path, [gearmand.address])
    eg = sendjob(path, "plugin", "eg", "--count", "7")
    assert eg.returncode == 0 and "7 sent, 7 ok, 0 failed" in eg.stdout
    assert "reversed 'gearman' -> 'namraeg'" in eg.stderr
    out = tmp_path / "numbers"
    batch = sendjob(path, "plugin", "store_numbers", "--upto", "13", "--dir", str(out), "--flaky")
    assert batch.returncode == 0, batch.stderr
    files = sorted(out.glob("batch-*.txt"))
    stored = [[int(n) for n in f.read_text().split()] for f in files]
    assert sorted(n for group in stored for n in group) == list(range(1, 14))
    assert all(len(group) <= 5 for group in stored)
    assert not any(1 in group and 2 in group for group in stored)
    assert "after 2 attempt(s)" in batch.stderr  # each store failed once and was retried


def test_task_put_and_submit_use_the_open_client_and_need_one(gearmand, start_workers,
                                                             plugin_dir, tmp_path,
                                                             monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir))
    import recordtasks
    start_recorder(start_workers, [gearmand.address], plugin_dir)
    _path, config = client_config(tmp_path, [gearmand.address])
    ledger = tmp_path / "ledger"
    # Outside an open client, put/submit say what to do instead of opening connections
    with pytest.raises(UsageError, match="open job client"):
        recordtasks.reverse.submit("abc")
    with JobClient(config):
        assert recordtasks.reverse.submit("abc").value == "cba"
        delivery = recordtasks.record.put(str(ledger), "from-put")
        assert delivery.handle.startswith("H:") and delivery.server == str(gearmand.address)
    wait_for(lambda: ledger_lines(ledger) == ["from-put"], 10, "the put job")
    assert recordtasks.reverse("abc") == "cba"  # a plain call runs locally
    with pytest.raises(UsageError):
        recordtasks.record.put(str(ledger), "after-close")


def test_a_function_nobody_serves_is_said_at_once_and_a_served_one_is_not(
        gearmand, start_workers, plugin_dir, tmp_path):
    path, _config = client_config(tmp_path, [gearmand.address], timeout=2, resend=0)
    lonely = sendjob(path, "run", "nobody_serves_this")
    assert lonely.returncode == 1
    lines = lonely.stderr.splitlines()
    assert lines[0].startswith("sendjob: warning: no worker serves 'nobody_serves_this' on "
                               f"any server ({gearmand.address})"), lonely.stderr
    assert "got no result" in lines[-1]  # and then it waited as configured
    start_recorder(start_workers, [gearmand.address], plugin_dir)
    # a job of a second: a look at the servers that wrongly found no worker would be said
    served = sendjob(path, "run", "record", "sleep=1", "--arg", str(tmp_path / "ledger"),
                     "--arg", "w")
    assert served.stdout == "w" and "warning" not in served.stderr, served
