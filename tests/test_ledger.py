"""The job ledger (store.url): a job runs once across workers and servers, its outcome is
read from any host, and a killed worker, a frozen server or a stopped database neither
loses a job nor runs it twice. Real gearmand, real workers, real SQLite and PostgreSQL.

Each "runs once" test counts runs by the command's own record (a line appended per run)
and is built so that, without the ledger, the job would be delivered twice (two servers,
or gearmand handing a dead worker's job out again): gearmand's own merging of copies
queued together cannot make it pass.
"""
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time

import pytest

from .client_helpers import client_config, sendjob
from .helpers import wait_for


def record_function(record, then="sleep 1; echo out-$$-$GEARMAN_FRAME_JOB_ID"):
    """A command that appends one line per run to ``record``; its output names its own
    pid, so two runs cannot give identical results."""
    return {"command": ["sh", "-c", f"echo run-$GEARMAN_FRAME_JOB_ID >> {record}; {then}"]}


def runs(record):
    return record.read_text().splitlines() if record.exists() else []


def sqlite_store(folder):
    return {"store": {"url": f"sqlite:///{folder / 'ledger.sqlite'}"}}


def ledger_state(path, job_id):
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT state FROM gf_jobs WHERE id = ?", (job_id,)).fetchone()
    return row[0] if row else None


def test_four_senders_with_one_key_on_two_servers_get_one_run(make_gearmand, start_workers,
                                                              tmp_path):
    """Two senders per server, all with one key, at the same moment: each server merges
    its own two, so the worker gets two deliveries; the ledger runs one and answers the
    other with its Result."""
    first, second = make_gearmand().address, make_gearmand().address
    record = tmp_path / "record"
    store = sqlite_store(tmp_path)
    start_workers([first, second], {"keyed": record_function(record)}, threads=4,
                  extra_config=store)
    configs = [client_config(tmp_path / f"sender-{i}", [server], timeout=30, **store)[0]
               for i, server in enumerate((first, second))]
    outputs = [None] * 4

    def send(index):
        outputs[index] = sendjob(configs[index % 2], "run", "keyed", "--key", "nightly-42",
                                 "--json")
    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for out in outputs:
        assert out.returncode == 0, out.stderr
    results = {out.stdout for out in outputs}
    assert len(results) == 1, results  # four identical results, one run's
    result = json.loads(results.pop())
    assert result["stdout"].startswith("out-")
    time.sleep(1.5)  # a second run, had there been one, would have written by now
    assert len(runs(record)) == 1, runs(record)

    again = sendjob(configs[1], "run", "keyed", "--key", "nightly-42", "--json")
    assert again.returncode == 0 and json.loads(again.stdout) == result
    assert len(runs(record)) == 1  # answered from the ledger, not run


def test_a_background_result_is_read_with_another_hosts_config(gearmand, start_workers,
                                                                tmp_path, postgres_url):
    """A job sent from one host's folder; its result and status read from another's (its
    own config, outbox and result store; only the PostgreSQL store is shared)."""
    gearmand = gearmand.address
    record = tmp_path / "record"
    store = {"store": {"url": postgres_url}}
    start_workers([gearmand], {"job": record_function(record, "echo hello")},
                  extra_config=store)
    sender, _ = client_config(tmp_path / "host-a", [gearmand], **store)
    elsewhere, _ = client_config(tmp_path / "host-b", [gearmand], **store)
    sent = sendjob(sender, "run", "job", "--background", "--json")
    assert sent.returncode == 0, sent.stderr
    job_id = json.loads(sent.stdout)["id"]

    found = sendjob(elsewhere, "result", job_id, "--wait", "20")
    assert found.returncode == 0, found.stderr
    assert found.stdout == "hello\n"
    status = sendjob(elsewhere, "status", job_id, "--json")
    assert json.loads(status.stdout) == {"id": job_id, "state": "done", "status": "ok",
                                         "runs": 1}
    assert not os.path.exists(tmp_path / "host-b" / "results.sqlite") or \
        "hello" not in (tmp_path / "host-b" / "results.sqlite").read_bytes().decode(
            errors="replace")  # it came from the ledger, not this host's own store


def test_a_worker_killed_while_answering_never_runs_the_command_again(
        restartable_gearmand, start_workers, tmp_path):
    """The command ended and its outcome is in the ledger, but the worker is SIGKILLed
    while its answer is on its way (gearmand is frozen and the 16 MB answer fills the
    socket): gearmand hands the job out again, and the next worker process answers from
    the ledger. The command ran once; the sender gets the result."""
    server = restartable_gearmand
    record = tmp_path / "record"
    store = sqlite_store(tmp_path)
    big = "sleep 1; head -c 16000000 /dev/zero | tr '\\0' a"
    worker = start_workers([server.address], {"big": {**record_function(record, big),
                                               "output_limit": "32MiB"}},
                           threads=1, extra_config=store)
    config, _ = client_config(tmp_path / "sender", [server.address], timeout=60, resend=0)
    out = {}
    sender = threading.Thread(target=lambda: out.update(
        done=sendjob(config, "run", "big", "--json", timeout=120)))
    sender.start()
    wait_for(lambda: runs(record), 15, "the command to start")
    job_id = runs(record)[0].split("-", 1)[1]
    first = worker.worker_pid()
    pid = server.running_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(lambda: ledger_state(tmp_path / "ledger.sqlite", job_id) == "ended", 15,
                 "the outcome to be recorded")
        time.sleep(0.5)  # the answer is being written to the frozen server
        os.kill(first, signal.SIGKILL)
    finally:
        os.kill(pid, signal.SIGCONT)
    sender.join(120)
    done = out["done"]
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["stdout"]) == 16_000_000
    assert worker.worker_pid() != first  # a new process answered it
    assert "answered from the ledger" in worker.log()
    assert len(runs(record)) == 1, runs(record)


def test_a_job_whose_worker_died_mid_command_is_taken_over_at_once(
        gearmand, start_workers, tmp_path):
    """A holder that died on this host is seen dead: its claim is released at once, not
    after the 30 s lease, and the job runs again to the end."""
    gearmand = gearmand.address
    record = tmp_path / "record"
    claims = tmp_path / "claims"
    worker = start_workers([gearmand], {"slow": record_function(
        record, f"echo $GEARMAN_FRAME_CLAIM >> {claims}; sleep 2; echo ok")},
        threads=1, extra_config=sqlite_store(tmp_path))
    config, _ = client_config(tmp_path / "sender", [gearmand], timeout=60, resend=0)
    out = {}
    sender = threading.Thread(target=lambda: out.update(done=sendjob(config, "run", "slow")))
    sender.start()
    wait_for(lambda: runs(record), 15, "the command to start")
    started = time.monotonic()
    os.kill(worker.worker_pid(), signal.SIGKILL)
    sender.join(60)
    assert out["done"].returncode == 0, out["done"].stderr
    assert out["done"].stdout == "ok\n"
    assert time.monotonic() - started < 25  # well inside the 30 s lease
    assert "died: taking it over" in worker.log()
    assert len(runs(record)) == 2  # the cut run, and the one that ended
    assert claims.read_text().split() == ["1", "2"]  # the takeover is told it is one


def test_an_unreachable_or_bad_store_is_one_line(tmp_path, gearmand):
    """A worker whose store cannot be reached does not start (exit 3, naming store.url);
    a malformed one is a config error (exit 2)."""
    from .worker_helpers import RUNWORKERS
    from gearman_frame.daemons.gearmand import free_port
    config = tmp_path / "config.yaml"
    for url, code, words in ((f"postgresql://nobody@127.0.0.1:{free_port()}/x", 3,
                              "store.url postgresql://nobody@127.0.0.1"),
                             ("mysql://db/x", 2, "store.url: expected off, sqlite:///PATH")):
        config.write_text(f"servers: ['{gearmand.address}']\nstore:\n  url: '{url}'\n"
                          "functions:\n  f:\n    command: [\"true\"]\n")
        out = subprocess.run([RUNWORKERS, "--config", str(config)], capture_output=True,
                             text=True, timeout=30)
        assert out.returncode == code, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], out.stderr


def test_the_ledger_stopped_for_20_seconds_loses_and_doubles_nothing(
        gearmand, start_workers, tmp_path, own_postgres):
    """PostgreSQL stopped mid-run: workers take no new job (one line), the jobs in hand
    wait, and all of them run exactly once when it is back."""
    gearmand = gearmand.address
    record = tmp_path / "record"
    store = {"store": {"url": own_postgres.url}}
    worker = start_workers([gearmand], {"step": record_function(record, "sleep 0.2")},
                           threads=3, extra_config=store)
    from send_job_client import Job, JobClient
    _, config = client_config(tmp_path / "sender", [gearmand])
    with JobClient(config) as client:
        ids = [d.id for d in client.submit_many([Job.of("step") for _ in range(60)],
                                                background=True)]
    wait_for(lambda: len(runs(record)) >= 8, 30, "some jobs to run")
    own_postgres.stop()
    stopped = len(runs(record))
    assert stopped < 30  # most jobs are still waiting in gearmand
    time.sleep(20)
    assert len(runs(record)) <= stopped + 3  # at most the jobs that were in hand
    own_postgres.start()
    back = time.monotonic()
    wait_for(lambda: "the job ledger is back" in worker.log(), 10, "work to resume")
    assert time.monotonic() - back < 5
    wait_for(lambda: len(runs(record)) >= 60, 60, "every job to run")
    time.sleep(1.0)
    ran = [line.split("-", 1)[1] for line in runs(record)]
    assert sorted(ran) == sorted(ids)  # each once: none lost, none twice
    assert worker.log().count("the job ledger is unreachable") == 1, worker.log()


def test_a_submit_kept_in_doubt_and_flushed_after_it_ran_runs_once(gearmand, start_workers,
                                                                   tmp_path):
    """gearmand frozen mid-submit: the sender keeps the job in its outbox, in doubt. The
    thawed server queues it and it runs to the end; the flush then finds the server no
    longer knows it and sends it again: the ledger answers that copy, nothing runs."""
    record = tmp_path / "record"
    worker = start_workers([gearmand.address], {"once": record_function(record, "echo ok")},
                           extra_config=sqlite_store(tmp_path))
    config, _ = client_config(tmp_path / "sender", [gearmand.address], timeout=1, resend=1)
    gearmand.signal(signal.SIGSTOP)
    try:
        sent = sendjob(config, "run", "once", "--background")
    finally:
        gearmand.signal(signal.SIGCONT)
    assert (sent.returncode, sent.stdout.strip()) == (0, "outbox"), sent.stderr
    wait_for(lambda: "done: ok" in worker.log(), 15, "the thawed server's copy to run")
    flushed = sendjob(config, "flush")
    assert flushed.returncode == 0 and "1 delivered, 0 waiting" in flushed.stdout, \
        flushed.stdout + flushed.stderr
    wait_for(lambda: "answered from the ledger" in worker.log(), 15,
             "the flushed copy to be answered")
    assert len(runs(record)) == 1, runs(record)


def test_a_gearmand_lost_for_good_its_jobs_run_once_through_another(
        make_gearmand, start_workers, tmp_path, postgres_url):
    """50 background jobs queued at a gearmand that is then SIGKILLed for good (builtin
    queue: its jobs die with it; its address stays in the config). After
    store.requeue_after the reaper sends them to the live server: each runs once, and a
    second pass finds nothing to send."""
    from send_job_client import Job, JobClient
    from .worker_helpers import RUNADMIN
    lost, alive = make_gearmand(), make_gearmand()
    record = tmp_path / "record"
    store = {"store": {"url": postgres_url, "requeue_after": 1}}
    _, sender = client_config(tmp_path / "sender", [lost.address], **store)
    with JobClient(sender) as client:
        sent = client.submit_many([Job.of("step") for _ in range(50)], background=True)
    assert all(d.server == lost.address for d in sent)
    ids = sorted(d.id for d in sent)
    lost.signal(signal.SIGKILL)
    servers = [lost.address, alive.address]
    start_workers(servers, {"step": record_function(record, "true")}, extra_config=store)
    admin, _ = client_config(tmp_path / "admin", servers, **store)
    time.sleep(1.5)  # past requeue_after
    reaped = subprocess.run([RUNADMIN, "--config", str(admin), "reaper"], capture_output=True,
                            text=True, timeout=60)
    assert reaped.returncode == 0, reaped.stderr
    assert "50 job(s) sent again" in reaped.stdout and lost.address in reaped.stdout
    wait_for(lambda: len(runs(record)) >= 50, 30, "the 50 jobs to run")
    again = subprocess.run([RUNADMIN, "--config", str(admin), "reaper"], capture_output=True,
                           text=True, timeout=60)
    assert "0 job(s) sent again" in again.stdout, again.stdout + again.stderr
    time.sleep(1.0)
    assert sorted(line.split("-", 1)[1] for line in runs(record)) == ids


def test_a_dead_letter_sent_back_on_purpose_runs_again(gearmand, start_workers, tmp_path):
    """A failed job's outcome is in the ledger, so a second delivery is answered with it;
    but `runadmin resend` of its dead letter is an operator's "run it again": its outcome
    is forgotten first, and it runs (and now succeeds)."""
    from .worker_helpers import RUNADMIN
    record, ready = tmp_path / "record", tmp_path / "ready"
    store = sqlite_store(tmp_path)
    worker = start_workers([gearmand.address], {"flaky": record_function(
        record, f"test -e {ready}")}, extra_config=store)
    config, _ = client_config(tmp_path / "admin", [gearmand.address], **store)
    sent = sendjob(config, "run", "flaky", "--background", "--json")
    job_id = json.loads(sent.stdout)["id"]
    wait_for(lambda: "dead-lettered" in worker.log(), 15, "the failure to be dead-lettered")
    state = {}
    wait_for(lambda: state.update(json.loads(sendjob(config, "status", job_id,
                                                     "--json").stdout)) or "status" in state,
             15, "the ledger to have its outcome")
    assert state["status"] == "failed" and state["state"] == "done", state
    ready.touch()
    dump = tmp_path / "dead.jsonl"
    cleared = subprocess.run([RUNADMIN, "--config", str(config), "clear", "__dead__.flaky",
                              "--dump", str(dump)], capture_output=True, text=True, timeout=60)
    assert cleared.returncode == 0, cleared.stderr
    resent = subprocess.run([RUNADMIN, "--config", str(config), "resend", str(dump)],
                            capture_output=True, text=True, timeout=60)
    assert resent.returncode == 0 and "1 queued" in resent.stdout, resent.stdout + resent.stderr
    done = sendjob(config, "result", job_id, "--wait", "15", "--json")
    assert json.loads(done.stdout)["status"] == "ok", done.stdout + done.stderr
    assert runs(record) == [f"run-{job_id}"] * 2


def test_a_command_cut_by_its_servers_death_runs_again_once_the_server_is_back(
        restartable_gearmand, start_workers, tmp_path):
    """gearmand SIGKILLed while a background command runs: the worker kills the command
    (nobody can take its answer). That cut run's outcome is not recorded: when the server
    is back and hands the job out again, it runs, to the end."""
    server = restartable_gearmand
    record = tmp_path / "record"
    store = sqlite_store(tmp_path)
    worker = start_workers([server.address], {"long": record_function(record, "sleep 3")},
                           extra_config=store)
    config, _ = client_config(tmp_path / "sender", [server.address], **store)
    job_id = json.loads(sendjob(config, "run", "long", "--background", "--json").stdout)["id"]
    wait_for(lambda: runs(record), 15, "the command to start")
    server.kill()
    wait_for(lambda: "is gone while job" in worker.log(), 15, "the cut command to be killed")
    server.start()
    done = sendjob(config, "result", job_id, "--wait", "30", "--json")
    assert json.loads(done.stdout)["status"] == "ok", done.stdout + done.stderr
    assert runs(record) == [f"run-{job_id}"] * 2


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_outcomes_expire_after_their_ttls(kind, request, tmp_path):
    """Within dedup_ttl a second delivery reads the outcome; after it, the job id is new
    again; prune() drops outcomes older than result_ttl (and dedup_ttl)."""
    from gearman_frame.ledger import CLAIMED, ENDED, HELD, open_ledger
    url = (f"sqlite:///{tmp_path / 'l.sqlite'}" if kind == "sqlite"
           else request.getfixturevalue("postgres_url"))
    ledger = open_ledger(url, lease=30, dedup_ttl=1, result_ttl=1)
    try:
        assert ledger.claim("j1", "f", "me", "h", "w").kind == CLAIMED
        assert ledger.claim("j1", "f", "other", "h", "w").kind == HELD
        assert ledger.finish("j1", "me", "ok", b'{"status":"ok"}')
        assert not ledger.finish("j1", "other", "ok", b"{}")  # not its claim
        seen = ledger.claim("j1", "f", "other", "h", "w")
        assert seen.kind == ENDED and seen.entry.result == b'{"status":"ok"}'
        time.sleep(1.3)
        assert ledger.claim("j1", "f", "other", "h", "w").kind == CLAIMED  # dedup_ttl over
        assert ledger.finish("j1", "other", "ok", b"{}")
        time.sleep(1.3)
        assert ledger.prune() == 1 and ledger.look("j1") is None
    finally:
        ledger.close()
