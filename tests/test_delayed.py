"""Delayed jobs: `sendjob run --in/--at`, submit_background(at=, delay=), held by a real
gearmand (SUBMIT_JOB_EPOCH) through a restart, and kept with their time in the outbox."""
import json
import time

import pytest

from gearman_frame.sending.dispatch import Job
from send_job_client import JobClient

from .client_helpers import client_config, sendjob
from .helpers import wait_for

STAMP = {"stamp": {"shell": "date +%s.%N >> {ledger}"}}


def stamps(path):
    return [float(line) for line in path.read_text().split()] if path.exists() else []


def test_in_3s_runs_after_3s_and_not_before(gearmand, start_workers, tmp_path):
    start_workers([gearmand.address], STAMP)
    path, _config = client_config(tmp_path / "s", [gearmand.address])
    ledger = tmp_path / "ledger"
    sent_at = time.time()
    proc = sendjob(path, "run", "stamp", f"ledger={ledger}", "--in", "3s", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["handle"]
    time.sleep(max(0.0, sent_at + 2.5 - time.time()))
    assert stamps(ledger) == [], "a delayed job ran early"
    wait_for(lambda: stamps(ledger), 6, "the delayed job to run")
    (ran,) = stamps(ledger)
    assert sent_at + 3.0 <= ran <= sent_at + 3.0 + 2.5


def test_at_in_the_past_runs_now(gearmand, start_workers, tmp_path):
    start_workers([gearmand.address], STAMP)
    path, _config = client_config(tmp_path / "s", [gearmand.address])
    ledger = tmp_path / "ledger"
    sent_at = time.time()
    proc = sendjob(path, "run", "stamp", f"ledger={ledger}", "--at", "2020-01-01T00:00:00Z")
    assert proc.returncode == 0, proc.stderr
    wait_for(lambda: stamps(ledger), 5, "the job to run")
    assert stamps(ledger)[0] - sent_at < 2.0


def test_a_delayed_job_survives_a_gearmand_kill_and_restart(restartable_gearmand,
                                                           start_workers, tmp_path):
    server = restartable_gearmand
    start_workers([server.address], STAMP)
    _path, config = client_config(tmp_path / "s", [server.address])
    ledger = tmp_path / "ledger"
    with JobClient(config) as client:
        sent_at = time.time()
        delivery = client.submit_background("stamp", ledger=str(ledger), delay=4)
    assert delivery.handle and not delivery.outbox
    server.kill()  # SIGKILL: only the SQLite queue keeps the job
    server.start()
    wait_for(lambda: stamps(ledger), 10, "the delayed job to run after the restart")
    assert stamps(ledger)[0] >= sent_at + 4.0
    time.sleep(1.5)
    assert len(stamps(ledger)) == 1


def test_a_delayed_job_kept_in_the_outbox_keeps_its_time(restartable_gearmand, start_workers,
                                                        tmp_path):
    server = restartable_gearmand
    path, config = client_config(tmp_path / "s", [server.address], timeout=1, resend=0)
    ledger = tmp_path / "ledger"
    server.kill()
    with JobClient(config) as client:
        sent_at = time.time()
        delivery = client.submit_background("stamp", ledger=str(ledger), delay=5)
    assert delivery.outbox
    server.start()
    start_workers([server.address], STAMP)
    flushed = sendjob(path, "flush")
    assert flushed.returncode == 0 and "1 delivered" in flushed.stdout, flushed.stderr
    assert time.time() < sent_at + 5.0 and stamps(ledger) == []
    wait_for(lambda: stamps(ledger), 10, "the delayed job to run")
    assert stamps(ledger)[0] >= sent_at + 5.0


@pytest.mark.parametrize("flag, value, says", [
    ("--in", "400d", "days ahead"),
    ("--in", "5x", "a duration"),
    ("--at", "2026-11-26T10:00:00", "with a zone"),
    ("--at", "tomorrow", "ISO 8601"),
])
def test_bad_delays_are_one_line_and_exit_2(gearmand, tmp_path, flag, value, says):
    path, _config = client_config(tmp_path / "s", [gearmand.address])
    proc = sendjob(path, "run", "stamp", "ledger=x", flag, value)
    assert proc.returncode == 2
    assert says in proc.stderr and flag in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_api_refuses_a_delayed_foreground_job_and_a_time_beyond_a_year(gearmand, tmp_path):
    _path, config = client_config(tmp_path / "s", [gearmand.address])
    with JobClient(config) as client:
        with pytest.raises(ValueError, match="days ahead"):
            client.submit_background("stamp", ledger="x", at=time.time() + 400 * 86400)
        with pytest.raises(ValueError, match="only a background job"):
            client.submit_many([Job("stamp", at=time.time() + 60)])


def test_a_signed_delayed_job_is_fresh_when_it_comes_due(gearmand, start_workers, tmp_path):
    """The signature of a delayed job is dated from its start time: held longer than
    security.max_age, it still runs (and an expired one would be refused)."""
    from .test_signing import make_key, security
    key = make_key(tmp_path / "fleet.key")
    start_workers([gearmand.address], STAMP, extra_config=security(key, max_age=2))
    path, _config = client_config(tmp_path / "s", [gearmand.address], **security(key, max_age=2))
    ledger = tmp_path / "ledger"
    sent_at = time.time()
    assert sendjob(path, "run", "stamp", f"ledger={ledger}", "--in", "5s").returncode == 0
    wait_for(lambda: stamps(ledger), 9, "the signed delayed job to run")
    assert stamps(ledger)[0] >= sent_at + 5.0
