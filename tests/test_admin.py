"""runadmin against real gearmands and real workers: reports, safe clearing, shutdown."""
import json
import os
import shutil
import subprocess
import sys
import threading

import pytest

from gearman_frame.addresses import parse_address
from gearman_frame.envelope import loads
from gearman_frame.queues import dead_letter_function
from manage_client.admin import AdminClient, totals
from send_job_client import Job, JobClient

from .client_helpers import client_config, sendjob
from .helpers import wait_for

RUNADMIN = os.path.join(os.path.dirname(sys.executable), "runadmin")
GEARADMIN = shutil.which("gearadmin")


def runadmin(config_path, *args, timeout=120):
    return subprocess.run([RUNADMIN, "--config", str(config_path), *args], capture_output=True,
                          text=True, timeout=timeout)


def queued_total(servers, function):
    with AdminClient([parse_address(s) for s in servers]) as admin:
        return sum(r.queued for r in admin.status() if r.function == function)


@pytest.mark.needs_tool("gearadmin")
def test_status_json_matches_gearadmin_on_two_servers(make_gearmand, tmp_path):
    first, second = make_gearmand(), make_gearmand()
    path, config = client_config(tmp_path, [first.address, second.address])
    with JobClient(config) as client:
        client.submit_many([Job.of("alpha", i=i) for i in range(7)], background=True)
        client.submit_many([Job.of("beta", i=i) for i in range(3)], background=True)
    proc = runadmin(path, "status", "--json")
    assert proc.returncode == 0, proc.stderr
    ours = {(r["server"], r["function"]): (r["queued"], r["running"], r["workers"])
            for r in json.loads(proc.stdout)}
    theirs = {}
    for server in (first, second):
        out = subprocess.run([GEARADMIN, "-h", server.host, "-p", str(server.port), "--status"],
                             capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line and line != ".":
                fn, total, running, workers = line.split("\t")
                theirs[(server.address, fn)] = (int(total) - int(running), int(running),
                                                int(workers))
    assert ours == theirs
    with AdminClient(config.servers) as admin:
        summed = totals(admin.status())
    assert (summed["alpha"].queued, summed["beta"].queued) == (7, 3)
    table = runadmin(path, "status").stdout
    assert "all" in table and "no workers" in table


@pytest.mark.needs_tool("gearman")
def test_workers_table_shows_a_row_per_foreign_connection_without_an_id(gearmand, tmp_path):
    """Two `gearman -w` workers that set no client id are two rows, each named by its
    connection, not one merged '-' row."""
    host, port = gearmand.address.rsplit(":", 1)
    foreign = [subprocess.Popen(["gearman", "-h", host, "-p", port, "-w", "-f", function,
                                 "--", "cat"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
               for function in ("noid_a", "noid_b")]
    try:
        path, _config = client_config(tmp_path, [gearmand.address])
        wait_for(lambda: {"noid_a", "noid_b"} <= set().union(
            *(r["functions"] for r in json.loads(runadmin(path, "workers", "--json").stdout))),
            10, "both foreign workers")
        table = runadmin(path, "workers").stdout
        rows = [line for line in table.splitlines() if "noid_" in line]
        assert len(rows) == 2, table
        assert all("(fd " in row for row in rows), table
    finally:
        for proc in foreign:
            proc.kill()
            proc.wait()


def test_status_table_has_no_empty_column_when_all_is_well(gearmand, start_workers,
                                                          tmp_path):
    """The note column (no workers, unreachable) is there only when there is a note."""
    start_workers([gearmand.address], {"echo": {"command": ["echo", "x"]}}, name="tidy")
    path, _config = client_config(tmp_path, [gearmand.address])
    table = runadmin(path, "status").stdout
    header = next(line for line in table.splitlines() if "server" in line)
    assert [c.strip() for c in header.strip().strip("┃").split("┃")] == [
        "server", "function", "queued", "running", "workers"], table


def test_workers_json_lists_a_worker_by_name(gearmand, start_workers, tmp_path):
    start_workers([gearmand.address], {"echo": {"command": ["echo", "{w}"]}}, name="lister",
                  threads=2)
    path, _config = client_config(tmp_path, [gearmand.address])
    proc = runadmin(path, "workers", "--json")
    rows = json.loads(proc.stdout)
    mine = [r for r in rows if r["client_id"].startswith("lister.")]
    assert {r["client_id"] for r in mine} == {"lister.0", "lister.1", "lister.ctl"}
    assert all(r["ip"] == "127.0.0.1" for r in mine)
    assert "echo" in next(r for r in mine if r["client_id"] == "lister.0")["functions"]
    assert all(r["functions"] for r in rows)  # connections serving nothing are hidden
    assert "lister" in runadmin(path, "workers").stdout


def test_clear_dumps_every_job_answers_senders_and_resend_brings_them_back(gearmand, tmp_path):
    path, config = client_config(tmp_path, [gearmand.address], timeout=60, resend=0)
    function, dump = "to_clear", tmp_path / "dump.jsonl"
    with JobClient(config) as client:
        sent = client.submit_many([Job.of(function, n=i) for i in range(50)], background=True)
    waiting = []

    def foreground(i):
        with JobClient(config) as client:
            waiting.append(client.submit(function, fg=i))
    senders = [threading.Thread(target=foreground, args=(i,)) for i in range(3)]
    for thread in senders:
        thread.start()
    wait_for(lambda: queued_total([gearmand.address], function) == 53, 10, "53 queued jobs")
    # When the queue is cleared
    proc = runadmin(path, "clear", function, "--dump", str(dump))
    assert proc.returncode == 0, proc.stderr
    assert "cleared 53 job(s)" in proc.stdout
    # Then every job is in the dump, nothing is queued and the senders got a failure
    lines = [loads(l) for l in dump.read_bytes().splitlines()]
    assert len(lines) == 53
    assert {l["unique"] for l in lines if l["background"]} == {d.id for d in sent}
    assert queued_total([gearmand.address], function) == 0
    for thread in senders:
        thread.join(10)
    assert len(waiting) == 3 and all("cleared by admin" in r.error for r in waiting)
    # And resend brings the 50 background jobs back, once each
    resent = runadmin(path, "resend", str(dump))
    assert resent.returncode == 0 and "50 queued" in resent.stdout
    assert "skipped 3 foreground" in resent.stdout
    assert queued_total([gearmand.address], function) == 50
    with AdminClient(config.servers) as admin:
        uniques = {u for _s, u in admin.show_unique_jobs()}
    assert {d.id for d in sent} <= uniques


def test_dead_letters_can_be_cleared_and_resent_to_their_function(gearmand, start_workers,
                                                                  tmp_path):
    worker = start_workers([gearmand.address], {"broken": {"command": ["false"]}})
    path, config = client_config(tmp_path, [gearmand.address])
    with JobClient(config) as client:
        job_id = client.submit_many([Job.of("broken")], background=True)[0].id
    dead = dead_letter_function("broken")
    wait_for(lambda: queued_total([gearmand.address], dead) == 1, 10, "the dead letter")
    worker.stop()
    dump = tmp_path / "dead.jsonl"
    assert runadmin(path, "clear", dead, "--dump", str(dump)).returncode == 0
    assert runadmin(path, "resend", str(dump)).returncode == 0
    with AdminClient(config.servers) as admin:
        assert ("broken", 1) in [(r.function, r.queued) for r in admin.status()]
        assert job_id in {u for _s, u in admin.show_unique_jobs()}


def test_shutdown_by_name(gearmand, start_workers, tmp_path):
    worker = start_workers([gearmand.address], {"t": {"command": ["true"]}}, name="stopme")
    path, _config = client_config(tmp_path, [gearmand.address])
    unknown = runadmin(path, "shutdown", "nobody")
    assert unknown.returncode == 1 and "no worker named 'nobody'" in unknown.stderr
    proc = runadmin(path, "shutdown", "stopme")
    assert proc.returncode == 0 and "worker stopme stopped" in proc.stdout
    assert worker.proc.wait(10) == 0
    assert "shutdown: " in proc.stderr  # the action is logged


def test_maxqueue_from_config_refuses_with_queue_full(gearmand, tmp_path):
    path, config = client_config(tmp_path, [gearmand.address],
                                 functions={"limited": {"command": ["true"], "maxqueue": 2}})
    assert runadmin(path, "apply").returncode == 0
    assert runadmin(path, "apply").returncode == 0  # idempotent
    for i in range(2):
        assert sendjob(path, "run", "limited", "--background").returncode == 0
    refused = sendjob(path, "run", "limited", "--background")
    assert refused.returncode == 1 and "queue is full" in refused.stderr.lower()


def test_err_reply_is_exit_1_with_the_servers_message(gearmand, tmp_path):
    path, _config = client_config(tmp_path, [gearmand.address])
    proc = runadmin(path, "cancel", "H:no:such")
    assert proc.returncode == 1 and "UNKNOWN_JOB" in proc.stderr
    version = runadmin(path, "version")
    assert version.returncode == 0 and "1.1" in version.stdout


def test_status_watch_refreshes_until_interrupted(gearmand, tmp_path):
    import signal
    import time
    path, _config = client_config(tmp_path, [gearmand.address])
    # SIGINT at its default action even when the suite runs as a shell's background job
    proc = subprocess.Popen([RUNADMIN, "--config", str(path), "status", "--watch", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    out, _err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert out.count("gearmand status") >= 3
