"""`runadmin dead`: the dead letters, decoded, and still queued afterwards (real gearmand,
the installed `runworkers` and `runadmin`)."""
import json
import os
import subprocess
import sys
import time

from .helpers import queued, wait_for
from .worker_helpers import send_background

RUNADMIN = os.path.join(os.path.dirname(sys.executable), "runadmin")


def runadmin(server, *args, cwd=None):
    return subprocess.run([RUNADMIN, "--servers", server.address, *args],
                          capture_output=True, text=True, timeout=60, cwd=cwd)


def test_dead_lists_dead_letters_decoded_and_leaves_them_queued(gearmand, start_workers,
                                                                 tmp_path):
    functions = {"doomed": {"shell": "echo no {path} >&2; exit 4", "retries": 1,
                            "retry_delay": 0.01},
                 "fine": {"command": ["true"]}}
    start_workers([gearmand.address], functions, name="dw", threads=1)
    ids = [send_background([gearmand.address], "doomed", path=f"/tmp/x{i}") for i in range(3)]
    wait_for(lambda: queued(gearmand, "__dead__.doomed") == 3, 15, "three dead letters")
    listed = runadmin(gearmand, "dead", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    letters = json.loads(listed.stdout)
    assert sorted(d["job_id"] for d in letters) == sorted(ids)
    for letter in letters:
        assert letter["function"] == "doomed" and letter["status"] == "failed"
        assert letter["attempts"] == 2 and letter["exit_code"] == 4
        assert letter["kwargs"]["path"].startswith("/tmp/x") and "exit code 4" in \
            letter["reason"]
    # nothing was taken away, twice over, and no temporary dump is left behind
    assert queued(gearmand, "__dead__.doomed") == 3
    text = runadmin(gearmand, "dead", "doomed", cwd=tmp_path)
    assert text.returncode == 0 and text.stdout.count("doomed") >= 3 and "failed" in text.stdout
    assert queued(gearmand, "__dead__.doomed") == 3
    assert not any((tmp_path / "var" / "dead-peek").iterdir())
    assert "no dead letters for fine" in runadmin(gearmand, "dead", "fine", cwd=tmp_path).stdout


def test_a_dead_letter_goes_back_after_requeue_after_up_to_max_requeues(gearmand,
                                                                         start_workers,
                                                                         tmp_path):
    """beanstalkd's kick: a job that always fails (1 retry) with ``requeue_after: 1s,
    max_requeues: 2`` runs 3 rounds of 2 attempts, a second or more apart, then stays dead
    and `runadmin dead` shows it with its requeues."""
    ledger = tmp_path / "ledger"
    functions = {"flaky": {"shell": f"date +%s.%N >> {ledger}; exit 1", "retries": 1,
                           "retry_delay": 0.01,
                           "dead_letter": {"requeue_after": "1s", "max_requeues": 2}}}
    start_workers([gearmand.address], functions, name="rq", threads=2)
    job_id = send_background([gearmand.address], "flaky")
    wait_for(lambda: queued(gearmand, "__dead__.flaky") == 1, 20, "the dead letter")
    runs = [float(x) for x in ledger.read_text().split()]
    assert len(runs) == 6, runs
    assert runs[2] - runs[1] >= 0.9 and runs[4] - runs[3] >= 0.9  # each round waited
    time.sleep(2)
    assert len(ledger.read_text().split()) == 6 and queued(gearmand, "flaky") == 0
    listed = runadmin(gearmand, "dead", "--json", cwd=tmp_path)
    (letter,) = json.loads(listed.stdout)
    assert letter["job_id"] == job_id and letter["requeues"] == 2
    assert letter["attempts"] == 2 and letter["status"] == "failed"


def test_a_bad_dead_letter_setting_names_the_key(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("functions:\n  f:\n    command: [\"true\"]\n"
                      "    dead_letter: {requeue_after: soon, max_requeues: 2}\n")
    proc = subprocess.run([RUNADMIN, "--config", str(config), "status"], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2 and "functions.f.dead_letter.requeue_after" in proc.stderr
    assert proc.stderr.count("\n") == 1


def _take_all(server, function, count):
    """Take ``count`` jobs off ``function``'s queue: their (unique, bytes)."""
    from .wire_helpers import WorkerThread
    taken = []
    with WorkerThread([server.address], {function: lambda w, job: taken.append(
            (job.unique, bytes(job.data))) or b""}):
        wait_for(lambda: len(taken) == count, 15, f"{count} jobs of {function}")
    return sorted(taken)


def test_dead_puts_every_letter_back_byte_for_byte(gearmand, start_workers, tmp_path):
    from gearman_frame.wire import WireClient
    start_workers([gearmand.address], {"doomed": {"shell": "echo é\xff >&2; exit 4"}},
                  name="bb", threads=1)
    for i in range(3):
        send_background([gearmand.address], "doomed", blob=bytes([i, 0, 255]) * 50)
    wait_for(lambda: queued(gearmand, "__dead__.doomed") == 3, 15, "three dead letters")
    # the letters as gearmand holds them, taken and queued again as they were
    before = _take_all(gearmand, "__dead__.doomed", 3)
    client = WireClient([gearmand.address])
    for unique, data in before:
        client.submit("__dead__.doomed", data, unique=unique, background=True, timeout=10)
    for _ in range(2):
        assert runadmin(gearmand, "dead", "doomed", "--json", cwd=tmp_path).returncode == 0
    assert queued(gearmand, "__dead__.doomed") == 3
    assert _take_all(gearmand, "__dead__.doomed", 3) == before  # same uniques, same bytes
