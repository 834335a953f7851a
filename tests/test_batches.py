"""Batch tasks: many senders' jobs gathered into one call, each sender told its own
result (real gearmand, the installed runworkers serving plugins/store_numbers.py)."""
import os
import signal
import time
import textwrap
import threading

import pytest

from gearman_frame.sending.dispatch import Job
from send_job_client import JobClient

from .client_helpers import client_config
from .conftest import _plugin_folder
from .helpers import function_status, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_forty_numbers_from_four_senders_are_stored_five_at_most_per_file(
        gearmand, start_workers, tmp_path):
    start_workers([gearmand.address], {"store_numbers": {"retries": 1}},
                  plugins=["plugins.store_numbers"], pythonpath=ROOT, threads=1)
    _path, config = client_config(tmp_path / "s", [gearmand.address], timeout=30)
    out = tmp_path / "numbers"
    told, errors = {}, []

    def sender(first):
        try:
            with JobClient(config) as client:
                numbers = list(range(first, 41, 4))
                results = client.submit_many([Job.of("store_numbers", number=n, dir=str(out))
                                              for n in numbers])
                for number, result in zip(numbers, results):
                    assert result.ok, result.error
                    told[number] = result.value["file"]
        except Exception as err:  # reported below, in the test's thread
            errors.append(err)
    threads = [threading.Thread(target=sender, args=(first,)) for first in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    files = {str(path): [int(n) for n in path.read_text().split()]
             for path in out.glob("batch-*.txt")}
    stored = sorted(n for numbers in files.values() for n in numbers)
    assert stored == list(range(1, 41))  # every number once
    assert all(len(numbers) <= 5 for numbers in files.values())
    assert not any(1 in numbers and 2 in numbers for numbers in files.values())
    assert all(number in files[path] for number, path in told.items()) and len(told) == 40
    assert len(files) <= 12  # gathered: 40 numbers, 5 a file, 1 and 2 apart


def test_one_job_each_from_four_senders_is_one_batch(gearmand, start_workers, tmp_path):
    """Jobs queued by different senders within the wait go to one call: one file."""
    start_workers([gearmand.address], {}, plugins=["plugins.store_numbers"],
                  pythonpath=ROOT, threads=1)
    _path, config = client_config(tmp_path / "s", [gearmand.address], timeout=30)
    out, told = tmp_path / "numbers", {}
    barrier = threading.Barrier(4)

    def sender(number):
        with JobClient(config) as client:
            barrier.wait()
            told[number] = client.submit("store_numbers", number=number, dir=str(out))
    threads = [threading.Thread(target=sender, args=(n,)) for n in (3, 4, 5, 6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert all(result.ok for result in told.values())
    assert len({result.value["file"] for result in told.values()}) == 1
    (only,) = out.glob("batch-*.txt")
    assert sorted(int(n) for n in only.read_text().split()) == [3, 4, 5, 6]


BATCH_TASKS = textwrap.dedent('''
    from gearman_frame.tasks import task

    @task("miscount", batch={"max": 3, "wait": 0.5})
    def miscount(jobs):
        return [1]

    @task("slow_ledger", batch={"max": 10, "wait": 4.0})
    def slow_ledger(jobs):
        with open(jobs[0].kwargs["ledger"], "a") as handle:
            handle.write("".join(f"{job.kwargs['n']}\\n" for job in jobs))
        return [job.kwargs["n"] for job in jobs]

    @task("partly", batch={"max": 3, "wait": 0.5})
    def partly(jobs):
        return [ValueError("odd") if job.kwargs["n"] % 2 else job.kwargs["n"] * 10
                for job in jobs]
''')


@pytest.fixture
def batch_worker(gearmand, start_workers, tmp_path):
    folder = _plugin_folder(tmp_path / "batchplugins", "batchtasks", BATCH_TASKS)
    worker = start_workers([gearmand.address], {}, plugins=["batchtasks"], pythonpath=folder,
                           threads=1)
    _path, config = client_config(tmp_path / "s", [gearmand.address], timeout=20)
    return config, worker


def test_jobs_a_killed_batch_worker_gathered_run_once_elsewhere(gearmand, batch_worker,
                                                                 tmp_path):
    config, worker = batch_worker
    """A worker process SIGKILLed while it holds a batch it gathered loses nothing:
    gearmand hands the jobs out again, the supervisor's new process runs them once."""
    ledger = tmp_path / "ledger"
    with JobClient(config) as client:
        for n in range(3):
            assert client.submit_background("slow_ledger", n=n, ledger=str(ledger)).handle
    wait_for(lambda: getattr(function_status(gearmand, "slow_ledger"), "running", 0) == 3,
             5, "the batch worker to hold all three")
    first = worker.worker_pid()
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: ledger.exists() and len(ledger.read_text().split()) == 3, 15,
             "the jobs to run in the replacement process")
    status = lambda: function_status(gearmand, "slow_ledger")  # noqa: E731
    wait_for(lambda: status() is None or (status().queued, status().running) == (0, 0), 10,
             "the jobs answered")
    time.sleep(4.5)  # one more gathering window (4 s): a copy handed out again runs by now
    assert sorted(ledger.read_text().split()) == ["0", "1", "2"]
    assert worker.worker_pid() != first


def test_a_batch_task_fails_jobs_one_by_one_and_says_when_it_miscounts(batch_worker):
    with JobClient(batch_worker[0]) as client:
        results = client.submit_many([Job.of("partly", n=n) for n in range(4)])
        assert [r.value if r.ok else r.error for r in results] == \
            [0, "ValueError: odd", 20, "ValueError: odd"]
        miscounted = client.submit_many([Job.of("miscount", n=n) for n in range(2)])
        assert all(not r.ok and "1 results for" in r.error for r in miscounted)
        raw = client.submit("partly", data=b"raw bytes")
        assert not raw.ok and b"not a raw payload" in raw.stderr
