"""Faults across hosts: links cut without a word (no FIN, no RST) between hosts in
network namespaces (gearman_frame/daemons/fleet.py), with the real gearmand, runworkers, sendjob and
runadmin inside them. Slow (each waits out a detection bound): marked ``fleet``; never
skipped under CI=true (a missing capability fails there)."""
import json
import os
import signal
import textwrap
import time

import pytest

from gearman_frame.daemons.fleet import BIN, Fleet, missing_capability
from .helpers import wait_for

pytestmark = [pytest.mark.fleet, pytest.mark.timeout(240)]


@pytest.fixture
def fleet(tmp_path):
    why = missing_capability()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the fleet tests need network namespaces: {why}")
        pytest.skip(why)
    with Fleet(tmp_path / "fleet") as made:
        yield made


def lines(path):
    return path.read_text().split("\n")[:-1] if path.exists() else []


def by_host(fleet, host, config):
    proc = host.run(f"{BIN}/runadmin", "--config", config, "workers", "--by-host", "--json")
    assert proc.returncode == 0, proc.stderr
    return {row["ip"]: row for row in json.loads(proc.stdout)}


def test_a_worker_host_cut_off_mid_job(fleet, tmp_path):
    """A worker host's link is cut while it runs a 30 s foreground command: gearmand hands
    the job to the other worker host within its keepalive bound and the sender gets that
    result; the cut-off host kills its command; when the link returns its worker serves
    again, same name, no restart. `runadmin workers --by-host` shows the cut-off host as
    gone meanwhile."""
    server, first, second, sender = (fleet.add(n) for n in ("srv", "w1", "w2", "snd"))
    fleet.gearmand(server)
    ledger = tmp_path / "ledger"
    functions = {"work": {"shell": f'echo "$FLEET_HOST start" >> {ledger}; sleep 30; '
                                   f'echo "$FLEET_HOST end" >> {ledger}',
                          "timeout": 60}}
    fleet.runworkers(first, [server], {"work": {**functions["work"],
                                                "env": {"FLEET_HOST": "w1"}}}, threads=1)
    wait_for(lambda: "ready:" in fleet.log(first), 15, "the worker on w1")
    config = fleet.config(sender, [server], client={"timeout": 90, "resend": 1})
    waiting = sender.start([f"{BIN}/sendjob", "--config", config, "--log-level", "WARNING",
                            "run", "work", "--json"], "sendjob.out")
    wait_for(lambda: "w1 start" in lines(ledger), 15, "the command to start on w1")
    fleet.runworkers(second, [server], {"work": {**functions["work"],
                                                 "env": {"FLEET_HOST": "w2"}}}, threads=1)
    wait_for(lambda: "ready:" in fleet.log(second), 15, "the worker on w2")
    seen = by_host(fleet, sender, config)
    assert {first.ip, second.ip} <= set(seen) and seen[first.ip]["workers"] == ["w1"]
    assert seen[first.ip]["state"] == "serving"
    cut_at = time.monotonic()
    first.cut()
    wait_for(lambda: "w2 start" in lines(ledger), 30, "gearmand to hand the job to w2")
    handed_after = time.monotonic() - cut_at
    wait_for(lambda: "is gone while job" in fleet.log(first), 25,
             "w1 to kill its command")
    assert handed_after < 25
    gone = by_host(fleet, sender, config)
    assert gone[first.ip]["state"] == "gone" and gone[first.ip]["workers"] == ["w1"]
    first.restore()
    assert waiting.wait(60) == 0, fleet.log(sender, "sendjob.out")
    assert json.loads(fleet.log(sender, "sendjob.out").splitlines()[-1])["status"] == "ok"
    assert lines(ledger) == ["w1 start", "w2 start", "w2 end"]  # w1's run was cut short
    wait_for(lambda: by_host(fleet, sender, config).get(first.ip, {}).get("state")
             == "serving", 40, "w1's worker to serve again")
    assert fleet.log(first).count("ready:") == 1  # the same process: reconnected, no restart


SENDER_SCRIPT = textwrap.dedent('''
    import sys, time
    from gearman_frame.config import load_config
    from send_job_client import JobClient
    config = load_config(sys.argv[1])
    taken = kept = 0
    with JobClient(config) as client:
        for number in range(500):
            delivery = client.submit_background("rec", n=number)
            taken += bool(delivery.handle)
            kept += bool(delivery.outbox)
            time.sleep(0.004)
    print(taken, kept)
''')


def test_a_sender_host_cut_off_mid_batch_loses_nothing(fleet, tmp_path):
    """500 background jobs, the sender's link cut for 3 s while it sends: what was not
    accepted waits in the outbox; `sendjob flush` after the link returns delivers it;
    every job runs once (none lost, none queued twice)."""
    server, worker, sender = (fleet.add(n) for n in ("srv", "w1", "snd"))
    fleet.gearmand(server)
    ledger = tmp_path / "ledger"
    config = fleet.config(sender, [server], client={"timeout": 2, "resend": 0,
                                                    "outbox": "outbox.sqlite"},
                          logging={"level": "ERROR"})
    script = sender.folder / "send.py"
    script.write_text(SENDER_SCRIPT)
    sending = sender.start([f"{BIN}/python", script, config], "send.out")
    time.sleep(0.8)
    sender.cut()
    time.sleep(3)
    sender.restore()
    assert sending.wait(120) == 0, fleet.log(sender, "send.out")
    taken, kept = map(int, fleet.log(sender, "send.out").split()[-2:])
    assert taken + kept == 500 and kept >= 1, (taken, kept)
    flushed = sender.run(f"{BIN}/sendjob", "--config", config, "flush")
    assert flushed.returncode == 0, flushed.stdout + flushed.stderr
    fleet.runworkers(worker, [server], {"rec": {"shell": f"echo {{n}} >> {ledger}"}},
                     threads=4)
    wait_for(lambda: len(lines(ledger)) >= 500, 60, "every job to run")
    time.sleep(1)
    ran = lines(ledger)
    assert sorted(map(int, ran)) == list(range(500)), "a job was lost or ran twice"


MID_JOB_SCRIPT = textwrap.dedent('''
    import os, sys, time
    from gearman_frame.config import load_config
    from send_job_client import JobClient
    config, flag = load_config(sys.argv[1]), sys.argv[2]
    with JobClient(config) as client:
        for number in (300, 301):  # one to each server: both connections are up
            assert client.submit("rec", n=number).ok
        print("connected", flush=True)
        while not os.path.exists(flag):
            time.sleep(0.05)
        started = time.monotonic()
        result = client.submit("rec", n=302)  # to the first server, whose link is cut
        print(result.status, round(time.monotonic() - started, 1), flush=True)
''')


def test_a_server_host_cut_off_loses_no_queued_job(fleet, tmp_path):
    """Two servers; one's link cut while workers and senders use both: foreground jobs
    get results through the other; background jobs queued on the cut-off server (held
    there until 6 s on) run once after its link returns; the worker recovers alone."""
    first, second, worker, sender = (fleet.add(n) for n in ("s1", "s2", "w1", "snd"))
    fleet.gearmand(first)
    fleet.gearmand(second)
    ledger = tmp_path / "ledger"
    fleet.runworkers(worker, [first, second], {"rec": {"shell": f"echo {{n}} >> {ledger}"}},
                     threads=2)
    wait_for(lambda: "ready:" in fleet.log(worker), 15, "the worker")
    only_first = fleet.config(sender, [first], client={"timeout": 5})
    for number in range(10):
        proc = sender.run(f"{BIN}/sendjob", "--config", only_first, "run", "rec",
                          f"n={number}", "--in", "6s")
        assert proc.returncode == 0, proc.stderr
    both = sender.folder / "both.yaml"
    both.write_text(only_first.read_text().replace(
        f"- {first.address}", f"- {first.address}\n- {second.address}").replace(
        "timeout: 5", "timeout: 3"))
    flag = tmp_path / "cut"
    script = sender.folder / "mid.py"
    script.write_text(MID_JOB_SCRIPT)
    mid_job = sender.start([f"{BIN}/python", script, both, flag], "mid.out")
    wait_for(lambda: "connected" in fleet.log(sender, "mid.out"), 15, "the sender's connections")
    first.cut()
    flag.touch()
    assert mid_job.wait(30) == 0, fleet.log(sender, "mid.out")
    status, seconds = fleet.log(sender, "mid.out").split()[-2:]
    assert status == "ok" and float(seconds) < 3 + 3, "no result through the other server"
    for number in range(100, 104):
        proc = sender.run(f"{BIN}/sendjob", "--config", both, "run", "rec", f"n={number}",
                          timeout=60)
        assert proc.returncode == 0, proc.stderr
    assert sorted(map(int, lines(ledger))) == [100, 101, 102, 103, 300, 301, 302]
    time.sleep(4)
    first.restore()
    wait_for(lambda: len(lines(ledger)) >= 17, 45, "the held jobs to run after the return")
    time.sleep(1)
    assert sorted(map(int, lines(ledger))) == list(range(10)) + [100, 101, 102, 103, 300,
                                                                 301, 302]
    worker_proc = fleet.procs[2]
    assert worker_proc.poll() is None and fleet.log(worker).count("ready:") == 1
    os.kill(worker_proc.pid, signal.SIGTERM)
