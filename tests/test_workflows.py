"""Workflows (chain, group, chord) with no coordinator: the worker that ends a step sends
what follows, a chord's join is a counter in the ledger, and each step runs once.

Real gearmand, two real worker processes (or more) sharing one SQLite ledger, real
commands. Each run is recorded by the command itself (a line appended per start and per
end), so a step run twice, or a callback sent twice and run twice, shows; the tests
wait past the end for a late copy.
"""
import json
import os
import signal
import sqlite3
import subprocess
import textwrap
import threading
import time

import pytest

from .client_helpers import client_config, sendjob
from .helpers import queued, wait_for
from .test_signing import make_key, security


def store(folder):
    return {"store": {"url": f"sqlite:///{folder / 'ledger.sqlite'}"}}


def lines(path):
    return path.read_text().splitlines() if path.exists() else []


def recorded(record, then):
    """A shell step that records its start (with its worker process's pid) and its end
    (with the claim number: 2 is a takeover) around ``then``."""
    return {"shell": f"echo start-$GEARMAN_FRAME_JOB_ID-$PPID >> {record}; {then}; "
                     f"echo end-$GEARMAN_FRAME_JOB_ID-$GEARMAN_FRAME_CLAIM >> {record}"}


def two_workers(start_workers, servers, functions, extra, threads=1, **kwargs):
    return [start_workers(servers, functions, name=f"w{i}", threads=threads,
                          extra_config=extra, **kwargs) for i in range(2)]


def pid_of_start(record, step_suffix):
    """The worker process running the step whose job id ends in ``step_suffix``."""
    for line in lines(record):
        if line.startswith("start-") and f"{step_suffix}-" in line:
            return int(line.rsplit("-", 1)[1])
    return None


def send_in_background(config, *argv):
    """``sendjob ARGV`` in a thread: (the thread, a dict that gets ``done``)."""
    out = {}
    sender = threading.Thread(target=lambda: out.update(done=sendjob(config, *argv,
                                                                     timeout=120)))
    sender.start()
    return sender, out


def first_step_ended(ledger):
    """True once the SQLite ledger at ``ledger`` has a first step's outcome."""
    with sqlite3.connect(ledger) as conn:
        return conn.execute("SELECT count(*) FROM gf_jobs WHERE id LIKE '%.0.0' AND "
                            "state = 'ended'").fetchone()[0] > 0


def ends(record):
    return [line for line in lines(record) if line.startswith("end-")]


def test_a_chain_whose_middle_worker_is_killed_ends_ok_each_step_ended_once(
        gearmand, start_workers, tmp_path):
    """Step 2's worker process is SIGKILLed mid-command: the other worker takes step 2
    over (told it is claim 2), runs it to its end, and sends step 3; each step ends once
    and the sender gets the last step's output, built from every step's."""
    record = tmp_path / "record"
    extra = store(tmp_path)
    two_workers(start_workers, [gearmand.address], {
        "one": recorded(record, "echo a"),
        "two": recorded(record, "sleep 3; echo {prev}b"),
        "three": recorded(record, "echo {prev}c"),
    }, extra)
    config, _ = client_config(tmp_path / "sender", [gearmand.address], **extra)
    sender, out = send_in_background(config, "chain", "one", "two", "three")
    wait_for(lambda: pid_of_start(record, ".1.0"), 20, "step 2 to start")
    os.kill(pid_of_start(record, ".1.0"), signal.SIGKILL)
    sender.join(120)
    assert out["done"].returncode == 0, out["done"].stderr
    assert out["done"].stdout == "abc\n"
    time.sleep(2)  # a late copy of any step would have started by now
    ended = ends(record)
    assert [e.split("-")[-2].rsplit(".", 2)[-2] for e in ended] == ["0", "1", "2"], ended
    assert ended[1].endswith("-2")  # the takeover was told it is one
    starts = [line for line in lines(record) if line.startswith("start-")]
    assert len(starts) == 4  # step 2 twice: the cut run and the takeover


def test_a_worker_killed_after_its_step_ended_does_not_run_it_again(
        gearmand, start_workers, tmp_path):
    """Step 1's outcome is in the ledger, and its worker is stuck sending step 2 to a
    frozen gearmand when it is SIGKILLed: gearmand hands step 1 out again after the thaw,
    and the other worker answers it from the ledger (not run) and sends step 2, which
    runs once. Without the ledger's claim, step 1 would run twice."""
    record = tmp_path / "record"
    extra = store(tmp_path)
    two_workers(start_workers, [gearmand.address], {
        "one": recorded(record, "sleep 2; echo a"),
        "two": recorded(record, "echo {prev}b"),
    }, extra)
    config, _ = client_config(tmp_path / "sender", [gearmand.address], **extra)
    sender, out = send_in_background(config, "chain", "one", "two")
    wait_for(lambda: pid_of_start(record, ".0.0"), 20, "step 1 to start")
    holder = pid_of_start(record, ".0.0")
    gearmand.signal(signal.SIGSTOP)
    try:
        wait_for(lambda: first_step_ended(tmp_path / "ledger.sqlite"), 15,
                 "step 1's outcome in the ledger")
        time.sleep(0.5)  # its worker is now sending step 2 to the frozen server
        os.kill(holder, signal.SIGKILL)
    finally:
        gearmand.signal(signal.SIGCONT)
    sender.join(120)
    assert out["done"].returncode == 0, out["done"].stderr
    assert out["done"].stdout == "ab\n"
    time.sleep(2)
    assert [line.split("-")[-2].rsplit(".", 2)[-2] for line in ends(record)] == ["0", "1"]


def test_a_chain_whose_first_step_fails_exits_1_and_runs_nothing_after(
        gearmand, start_workers, tmp_path):
    """The later steps never run; the on-failure step runs once, with the failed step's
    result; the sender's error names the step; status shows the rest skipped."""
    record = tmp_path / "record"
    extra = store(tmp_path)
    two_workers(start_workers, [gearmand.address], {
        "fails": {"shell": "echo broken >&2; exit 3"},
        "later": recorded(record, "echo later"),
        "notify": {"shell": f"printf '%s\\n' {{prev}} >> {tmp_path / 'failures'}"},
    }, extra)
    config, _ = client_config(tmp_path / "sender", [gearmand.address], **extra)
    done = sendjob(config, "chain", "fails", "later", "later", "--on-failure", "notify",
                   "--json")
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "failed" and result["exit_code"] == 3
    assert "failed at step 1 of 3 (fails)" in result["error"]
    assert result["stderr"] == "broken\n"
    wait_for(lambda: lines(tmp_path / "failures"), 15, "the on-failure step")
    time.sleep(2)  # a later step, or a second on-failure run, would show by now
    assert lines(record) == []
    failures = lines(tmp_path / "failures")
    assert len(failures) == 1 and json.loads(failures[0])["exit_code"] == 3
    status = sendjob(config, "status", result["workflow"], "--json")
    shown = json.loads(status.stdout)
    assert shown["state"] == "failed"
    assert [s["status"] for s in shown["step_list"]] == ["failed", "skipped", "skipped", "ok"]
    text = sendjob(config, "status", result["workflow"]).stdout
    assert "chain failed: 1/3 steps ended" in text and "on-failure  notify" in text


def test_a_chord_of_20_calls_back_once_in_order_though_a_member_worker_is_killed(
        gearmand, start_workers, tmp_path):
    """Twenty members over two worker processes of three threads each, ending near the
    same moment; member 7's process is SIGKILLed mid-run. The callback runs once, after
    every member, with the twenty outcomes in the group's order."""
    record, calls = tmp_path / "record", tmp_path / "calls"
    extra = store(tmp_path)
    two_workers(start_workers, [gearmand.address], {
        "member": recorded(record, "if [ {n} = 7 ]; then sleep 3; else sleep 1; fi; "
                                   "echo m{n}"),
        "total": {"shell": f"echo run >> {calls}; echo {{prev}} | tr '\\n' ,"},
    }, extra, threads=3)
    config, _ = client_config(tmp_path / "sender", [gearmand.address], **extra)
    members = [f"member n={n}" for n in range(20)]
    sender, out = send_in_background(config, "chord", *members, "total")
    wait_for(lambda: pid_of_start(record, ".0.7"), 20, "member 7 to start")
    os.kill(pid_of_start(record, ".0.7"), signal.SIGKILL)
    sender.join(120)
    assert out["done"].returncode == 0, out["done"].stderr
    assert out["done"].stdout == ",".join(f"m{n}" for n in range(20)) + ","
    time.sleep(3)  # a second callback sent by a second "last" member would run by now
    assert lines(calls) == ["run"]
    assert len(ends(record)) == 20  # each member ended once


PLUGIN = textwrap.dedent('''
    from gearman_frame.tasks import task

    @task("add")
    def add(x, y):
        return x + y

    @task("square")
    def square(n):
        return n * n

    @task("tsum")
    def tsum(values):
        return sum(values)

    @task("shout")
    def shout(text):
        return text.upper() + "!"
''')


@pytest.fixture
def arithmetic(tmp_path):
    folder = tmp_path / "plugins_here"
    folder.mkdir()
    (folder / "arithmetic.py").write_text(PLUGIN)
    return folder


def test_python_workflows_pass_values_and_signed_steps_are_accepted(
        gearmand, start_workers, tmp_path, arithmetic, monkeypatch):
    """With a signing key on senders and workers: a task gets the step before's value as
    its first argument; a command's stdout goes to a task; a chord's callback gets the
    list; put_workflow returns an id whose status the ledger has from another client."""
    import sys
    monkeypatch.syspath_prepend(str(arithmetic))
    key = make_key(tmp_path / "key")
    extra = {**store(tmp_path), **security(key)}
    two_workers(start_workers, [gearmand.address], {"hello": {"shell": "echo hi {who}"}},
                extra, threads=2, plugins=["arithmetic"], pythonpath=arithmetic)
    _, config = client_config(tmp_path / "sender", [gearmand.address], timeout=30, **extra)
    import arithmetic as tasks_here  # registers the tasks, as a sender's code does
    from gearman_frame.workflows import Function, chain, chord, group
    from send_job_client import JobClient
    with JobClient(config) as client:
        got = client.submit_workflow(chain(tasks_here.add.s(1, 2), tasks_here.add.s(10)),
                                     timeout=30)
        assert got.ok and got.value == 13
        got = client.submit_workflow(chain(Function("hello").s(who="there"),
                                           tasks_here.shout.s()), timeout=30)
        assert got.value == "HI THERE!"
        got = client.submit_workflow(chord(group(tasks_here.square.s(n) for n in range(6)),
                                           tasks_here.tsum.s()), timeout=30)
        assert got.value == 55
        got = client.submit_workflow(group(tasks_here.square.s(n) for n in range(4)),
                                     timeout=30)
        assert got.value == [0, 1, 4, 9]
        workflow = client.put_workflow(chain(tasks_here.add.s(2, 2), tasks_here.add.s(1)))
    sys.modules.pop("arithmetic", None)
    with JobClient(config) as other:
        from send_job_client.workflows import wait_workflow
        assert wait_workflow(other, workflow, 30).value == 5


def test_bad_workflows_are_one_line_exit_2_and_send_nothing(gearmand, tmp_path):
    """An unknown function in a step, a chain of nothing, a step without its template's
    fields, {prev} in a first step, a chord without a callback, a malformed step: one
    line, exit 2, no job queued and no workflow recorded."""
    extra = store(tmp_path)
    config, loaded = client_config(tmp_path / "sender", [gearmand.address], **extra,
                                   functions={"f": {"command": ["echo", "{x}"]},
                                              "g": {"command": ["echo", "{prev}"]}})
    for argv, words in (
            (["chain", "f x=1", "nope"], "step 2 (nope): unknown function 'nope'"),
            (["chain"], "a chain of nothing"),
            (["group"], "a group of nothing"),
            (["chain", "f"], "step 1 (f): missing template field(s): x"),
            (["chain", "g"], "step 1 (g): its template has {prev}"),
            (["chord", "f x=1"], "the members, then the callback"),
            (["chain", "f x=1", "f 'x"], "step 2: No closing quotation"),
            (["chain", "f x=1", "f =3"], "step 2 (f): expected key=value"),
            (["chain", "f x=1", "--on-failure", "nope"], "the on-failure step: unknown"),
            (["chain", "f x=1", "__ctl__.w0"], "step 2 (__ctl__.w0): '__ctl__.w0' is a "
                                               "reserved name")):
        out = sendjob(config, *argv)
        assert out.returncode == 2, (argv, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and words in out.stderr, \
            (argv, out.stderr)
    assert queued(gearmand, "f") == 0
    with sqlite3.connect(tmp_path / "ledger.sqlite") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert "gf_workflows" not in tables or \
            conn.execute("SELECT count(*) FROM gf_workflows").fetchone()[0] == 0
    from gearman_frame.workflows import chain, group
    with pytest.raises(ValueError, match="member 1 of the group is a chain"):
        from gearman_frame.workflows import plan_of, signature
        plan_of(group(chain(signature("f", x=1))))
    no_ledger, _ = client_config(tmp_path / "plain", [gearmand.address],
                                 functions={"f": {"command": ["echo", "{x}"]}})
    out = sendjob(no_ledger, "chain", "f x=1")
    assert out.returncode == 2 and "workflows need the job ledger: set store.url" in out.stderr


def test_a_next_step_lost_with_its_server_is_carried_on_by_the_reaper(
        make_gearmand, start_workers, tmp_path):
    """Step 1's outcome is recorded; its worker, stuck sending step 2 to a frozen gearmand,
    is SIGKILLed, and that gearmand is then killed for good (its queue, step 1's copy and
    step 2's bytes die with it). Nothing would ever send step 2 again: the reaper finds
    the workflow stopped after an ended stage, sends step 2 to the live server, and the
    workflow ends ok with each step run once."""
    from .worker_helpers import RUNADMIN
    lost, alive = make_gearmand(), make_gearmand()
    record = tmp_path / "record"
    extra = {"store": {"url": f"sqlite:///{tmp_path / 'ledger.sqlite'}", "requeue_after": 1}}
    functions = {"one": recorded(record, "sleep 2; echo a"),
                 "two": recorded(record, "echo {prev}b")}
    first = start_workers([lost.address], functions, name="first", threads=1,
                          extra_config=extra)
    config, _ = client_config(tmp_path / "sender", [lost.address], **extra)
    workflow = sendjob(config, "chain", "one", "two", "--background").stdout.strip()
    wait_for(lambda: pid_of_start(record, ".0.0"), 20, "step 1 to start")
    lost.signal(signal.SIGSTOP)
    wait_for(lambda: first_step_ended(tmp_path / "ledger.sqlite"), 15,
             "step 1's outcome in the ledger")
    time.sleep(0.5)  # its worker is now sending step 2 to the frozen server
    first.kill()  # the supervisor first, so that nothing starts the worker again
    os.kill(pid_of_start(record, ".0.0"), signal.SIGKILL)
    lost.signal(signal.SIGKILL)  # lost for good: its builtin queue dies with it
    start_workers([alive.address], functions, name="second", threads=1, extra_config=extra)
    admin, _ = client_config(tmp_path / "admin", [lost.address, alive.address], **extra)
    time.sleep(1.5)  # past requeue_after
    reaped = subprocess.run([RUNADMIN, "--config", str(admin), "reaper"], capture_output=True,
                            text=True, timeout=60)
    assert reaped.returncode == 0, reaped.stderr
    assert "1 workflow step(s) found never sent on" in reaped.stdout, reaped.stdout
    assert "1 job(s) sent again" in reaped.stdout, reaped.stdout
    wait_for(lambda: '"state": "ok"' in sendjob(admin, "status", workflow, "--json").stdout,
             20, "the workflow to end ok")
    shown = json.loads(sendjob(admin, "status", workflow, "--json").stdout)
    assert [s["status"] for s in shown["step_list"]] == ["ok", "ok"]
    assert [line.split("-")[-2].rsplit(".", 2)[-2] for line in ends(record)] == ["0", "1"]
    again = subprocess.run([RUNADMIN, "--config", str(admin), "reaper"], capture_output=True,
                           text=True, timeout=60)
    assert "never sent on" not in again.stdout and "0 job(s) sent again" in again.stdout


def test_a_sender_waits_for_its_workflow_through_a_ledger_outage(
        gearmand, start_workers, tmp_path, own_postgres):
    """PostgreSQL stopped for 4 s while step 1 runs: the sender says so once and waits on,
    the worker records step 1 once the ledger is back, and the chain ends ok, each step
    once."""
    record = tmp_path / "record"
    extra = {"store": {"url": own_postgres.url}}
    start_workers([gearmand.address], {"slow": recorded(record, "sleep 2; echo a"),
                                       "fast": recorded(record, "echo {prev}b")},
                  threads=1, extra_config=extra)
    config, _ = client_config(tmp_path / "sender", [gearmand.address], **extra)
    sender, out = send_in_background(config, "chain", "slow", "fast")
    wait_for(lambda: pid_of_start(record, ".0.0"), 20, "step 1 to start")
    own_postgres.stop()
    time.sleep(4)  # step 1 ends meanwhile: its outcome waits for the ledger
    own_postgres.start()
    sender.join(120)
    assert out["done"].returncode == 0, out["done"].stderr
    assert out["done"].stdout == "ab\n"
    assert out["done"].stderr.count("the job ledger is unreachable") == 1
    assert [line.split("-")[-2].rsplit(".", 2)[-2] for line in ends(record)] == ["0", "1"]
