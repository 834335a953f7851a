"""Results that outlive the sender: background jobs with a result channel, the result
store, `sendjob result/status/results`, and results that wait out a dead server."""
import os
import json
import shutil
import signal
import subprocess
import time

import pytest

from gearman_frame.queues import results_function
from send_job_client import Job, JobClient

from .client_helpers import SENDJOB, client_config, sendjob
from .helpers import wait_for
from .test_admin import queued_total

FUNCTIONS = {"say": {"command": ["sh", "-c", "sleep $0; echo $1", "{secs}", "{word}"]},
             "bad": {"shell": "echo oops >&2; exit 3"}}
GEARMAN = shutil.which("gearman")


def sender(tmp_path, servers, channel="ch", **extra):
    return client_config(tmp_path / "sender", servers, timeout=10,
                         client_extra={"results": channel}, **extra)


def background(path, *args):
    proc = sendjob(path, "run", *args, "--background", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["id"]


def status(path, job_id):
    proc = sendjob(path, "status", job_id, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_background_result_is_looked_up_and_its_status_follows_the_job(gearmand,
                                                                       start_workers,
                                                                       tmp_path):
    path, _config = sender(tmp_path, [gearmand.address])
    ok_id = background(path, "say", "secs=0", "word=hello")
    assert status(path, ok_id)["state"] == "queued"  # no worker yet
    start_workers([gearmand.address], FUNCTIONS)
    found = sendjob(path, "result", ok_id, "--wait", "20", "--json")
    record = json.loads(found.stdout)
    assert found.returncode == 0 and (record["status"], record["stdout"]) == ("ok", "hello\n")
    assert record["worker"] == "w0" and record["function"] == "say" and record["runs"] == 1
    bad_id = background(path, "bad")
    failed = sendjob(path, "result", bad_id, "--wait", "20", "--json")
    record = json.loads(failed.stdout)
    assert failed.returncode == 1 and (record["status"], record["exit_code"]) == ("failed", 3)
    assert record["stderr"] == "oops\n"
    slow_id = background(path, "say", "secs=3", "word=slow")
    wait_for(lambda: status(path, slow_id)["state"] == "running", 10, "the job to run")
    assert "progress" in wait_for(lambda: status(path, slow_id).get("progress") and
                                  status(path, slow_id), 5, "progress")
    wait_for(lambda: status(path, slow_id)["state"] == "done", 15, "the job to finish")
    unknown = sendjob(path, "result", "0" * 32)
    assert unknown.returncode == 1 and "not finished" in unknown.stderr
    listed = sendjob(path, "results", "--failed", "--json")
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [bad_id]


def test_a_published_result_survives_a_gearmand_restart(restartable_gearmand, start_workers,
                                                        tmp_path):
    server = restartable_gearmand
    path, _config = sender(tmp_path, [server.address])
    worker = start_workers([server.address], FUNCTIONS)
    job_id = background(path, "say", "secs=0", "word=kept")
    # its start notice and its result
    wait_for(lambda: queued_total([server.address], results_function("ch")) == 2, 10,
             "the result to be published")
    worker.kill()
    server.kill()
    server.start()
    found = sendjob(path, "result", job_id, "--wait", "10", "--json")
    assert found.returncode == 0 and json.loads(found.stdout)["stdout"] == "kept\n"


def test_a_result_no_server_takes_is_kept_and_published_when_one_is_back(
        restartable_gearmand, start_workers, plugin, tmp_path):
    """A Python task (a command whose server goes away is killed instead: see
    test_a_command_whose_server_goes_away_is_killed_and_runs_once_after_the_restart)."""
    server = restartable_gearmand
    path, _config = sender(tmp_path, [server.address])
    worker = start_workers([server.address], {}, plugins=["fleettasks"], pythonpath=plugin)
    job_id = background(path, "nap", "seconds=2")
    wait_for(lambda: status(path, job_id)["state"] == "running", 10, "the job to run")
    server.kill()  # every server is down when the task ends
    wait_for(lambda: "no server took the result" in worker.log(), 15,
             "the worker to keep the result")
    assert list((worker.folder / "var" / "spool" / "results").iterdir())
    server.start()
    found = sendjob(path, "result", job_id, "--wait", "30", "--json")
    record = json.loads(found.stdout)
    assert found.returncode == 0 and record["status"] == "ok", found.stderr
    wait_for(lambda: not list((worker.folder / "var" / "spool" / "results").iterdir()), 15,
             "the spool to empty")


def test_results_gearmand_refuses_are_kept_while_the_worker_grabs_ahead(gearmand,
                                                                     start_workers,
                                                                     tmp_path):
    """A worker with jobs waiting asks for the next one ahead of the result it publishes
    (gearmand hands the job out first, then files the result): gearmand's answers then
    come grab first, and a result it refuses (its channel's queue is full) must still be
    told from the grab's answer: kept in the spool, published once there is room, one
    result for every job."""
    from manage_client.admin import AdminClient
    from gearman_frame.addresses import parse_address
    channel = results_function("ch")
    with AdminClient([parse_address(gearmand.address)]) as admin:
        admin.create_function(channel)  # maxqueue applies only to a function gearmand knows
        admin.maxqueue(channel, 3)
    path, config = sender(tmp_path, [gearmand.address])
    with JobClient(config) as client:
        sent = client.submit_many([Job.of("reverse", f"w{i}") for i in range(12)],
                                  background=True)
    worker = start_workers([gearmand.address], {}, plugins=["plugins.eg"])
    spool = worker.folder / "var" / "spool" / "results"
    wait_for(lambda: queued_total([gearmand.address], "reverse") == 0, 15, "the jobs to run")
    wait_for(lambda: spool.exists() and len(list(spool.iterdir())) == 9, 15,
             "nine refused results in the spool")
    assert queued_total([gearmand.address], channel) == 3
    # a result is in the spool before the line saying why is written: wait for the lines
    wait_for(lambda: worker.log().count("refused it") >= 9, 10, "nine refusals logged")
    assert worker.log().count("refused it") == 9
    with AdminClient([parse_address(gearmand.address)]) as admin:
        admin.maxqueue(channel, 100)
    wait_for(lambda: not list(spool.iterdir()), 20, "the spool to empty")
    with JobClient(config) as client:
        collected = sorted(result.id for result in client.results("ch"))
    assert collected == sorted(delivery.id for delivery in sent)
    assert "refused a grab" not in worker.log()


def test_a_command_whose_server_goes_away_is_killed_and_runs_once_after_the_restart(
        restartable_gearmand, start_workers, tmp_path):
    """gearmand killed while a background command runs: the worker kills the command at
    once (finishing it would run it twice: gearmand hands the job out again after its
    restart), and the job runs to the end once, after the restart."""
    server = restartable_gearmand
    ledger = tmp_path / "ledger"
    functions = {"slow": {"shell": f"echo start >> {ledger}; sleep 3; echo end >> {ledger}"}}
    worker = start_workers([server.address], functions)
    path, _config = sender(tmp_path, [server.address])
    background(path, "slow")
    wait_for(lambda: ledger.exists() and "start" in ledger.read_text(), 10, "the command")
    server.kill()
    wait_for(lambda: "is gone while job" in worker.log(), 5, "the command to be killed")
    server.start()
    wait_for(lambda: ledger.read_text().split().count("end") == 1, 20, "the rerun to end")
    time.sleep(1)
    assert ledger.read_text().split() == ["start", "start", "end"]


def test_results_follow_prints_each_result_once(gearmand, start_workers, tmp_path):
    start_workers([gearmand.address], FUNCTIONS, threads=4)
    path, config = sender(tmp_path, [gearmand.address])
    follower = subprocess.Popen([SENDJOB, "--config", str(path), "results", "--follow",
                                 "--json"], stdout=subprocess.PIPE, text=True)
    try:
        with JobClient(config) as client:
            sent = client.submit_many([Job.of("say", secs=0, word=f"w{i}") for i in range(200)],
                                      background=True)
        ids = {delivery.id for delivery in sent}
        seen = []
        deadline = time.monotonic() + 60
        while len(seen) < 200 and time.monotonic() < deadline:
            seen.append(json.loads(follower.stdout.readline())["id"])
        assert sorted(seen) == sorted(ids)
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(20)


@pytest.mark.needs_tool("gearman")
def test_a_published_result_is_plain_json_for_any_language(gearmand, start_workers,
                                                           tmp_path):
    start_workers([gearmand.address], FUNCTIONS)
    path, _config = sender(tmp_path, [gearmand.address], channel="other")
    job_id = background(path, "say", "secs=0", "word=neutral")
    wait_for(lambda: queued_total([gearmand.address], results_function("other")) == 2, 10,
             "the start notice and the result")
    proc = subprocess.run([GEARMAN, "-h", gearmand.host, "-p", str(gearmand.port), "-w",
                           "-c", "2", "-f", results_function("other")],
                          capture_output=True, timeout=30)
    notice, record = (json.loads(line) for line in
                      proc.stdout.replace(b"}{", b"}\n{").splitlines())
    assert (notice["id"], notice["event"], notice["worker"]) == (job_id, "started", "w0")
    assert (record["id"], record["status"], record["stdout"]) == (job_id, "ok", "neutral\n")
    assert record["kwargs"] == {"secs": 0, "word": "neutral"}


def test_a_job_rerun_after_its_worker_was_killed_has_one_record_of_two_runs(gearmand,
                                                                           start_workers,
                                                                           tmp_path):
    path, _config = sender(tmp_path, [gearmand.address])
    first = start_workers([gearmand.address], FUNCTIONS, name="first")
    job_id = background(path, "say", "secs=3", "word=twice")
    wait_for(lambda: status(path, job_id)["state"] == "running", 10, "the first run")
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    start_workers([gearmand.address], FUNCTIONS, name="second")
    found = sendjob(path, "result", job_id, "--wait", "20", "--json")
    record = json.loads(found.stdout)
    assert found.returncode == 0 and (record["worker"], record["runs"]) == ("second", 2)
    listed = sendjob(path, "results", "--json")
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [job_id]


BACKGROUND_PLUGIN = '''
import json
from send_job_client import Job

background = True

def jobs(args, config):
    for i in range(5):
        yield Job.of("say", secs=0, word=f"w{i}")

def on_result(job, result):
    with open(args_file(), "a") as handle:
        handle.write(json.dumps([job.id, result.id, result.status, result.stdout]) + "\\n")

def args_file():
    import os
    return os.environ["PLUGIN_LEDGER"]
'''


def test_a_background_plugin_waits_for_its_results(gearmand, start_workers, tmp_path):
    start_workers([gearmand.address], FUNCTIONS)
    path, _config = sender(tmp_path, [gearmand.address])
    plugins = tmp_path / "plugins_here"
    plugins.mkdir()
    (plugins / "bgplug.py").write_text(BACKGROUND_PLUGIN)
    ledger = tmp_path / "ledger"
    proc = sendjob(path, "plugin", "bgplug", "--wait", "30",
                   env={"PYTHONPATH": str(plugins), "PLUGIN_LEDGER": str(ledger)})
    assert proc.returncode == 0 and "5 sent, 5 ok, 0 failed" in proc.stdout, proc.stderr
    calls = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert sorted(stdout for _job, _id, _status, stdout in calls) == \
        [f"w{i}\n" for i in range(5)]
    assert all(job_id == result_id and status == "ok"
               for job_id, result_id, status, _out in calls)


def test_result_lookups_answer_the_same_from_the_short_way_and_see_an_edited_config(
        tmp_path):
    """`sendjob result ID` answers from the store with sqlite3 and json alone once the
    full sendjob noted where the config's store is; what it prints is what the full path
    prints, and an edited config is never answered from the old note."""
    import json as _json
    import subprocess

    from gearman_frame.sending.result_store import ResultStore

    def store(name, records):
        path = tmp_path / name
        results = ResultStore(str(path), 3600)
        for record in records:
            results.add(_json.dumps(record).encode())
        return path
    first = store("a.sqlite", [
        {"id": "job1", "status": "ok", "stdout": "hello é\n", "stderr": "", "value": None},
        {"id": "bad", "status": "failed", "stdout": "", "stderr": "oops\n",
         "error": "exit code 3", "value": None},
        {"id": "bin", "status": "ok", "stdout": {"__b64__": "AAEC/w=="}, "value": None},
        {"id": "plain", "status": "ok", "stdout": "hello\n", "value": None}])
    second = store("b.sqlite", [{"id": "job1", "status": "ok", "stdout": "other\n",
                                 "value": None}])
    config = tmp_path / "c.yaml"
    config.write_text(f"client: {{result_store: {first}}}\n")
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}

    def ask(*args, **extra):
        return subprocess.run([SENDJOB, "--config", str(config), "result", *args],
                              capture_output=True, env={**os.environ, **env, **extra},
                              timeout=60)
    full = ask("plain")  # the full sendjob: it notes where the store is
    assert list((tmp_path / "cache" / "gearman-frame" / "configs").iterdir())
    # a servers override the full sendjob refuses (exit 2) and a store lookup never reads:
    # an answer under it can only have come the short way
    unusable = {"GEARMAN_FRAME_SERVERS": "bad host:1"}
    assert ask("not-in-the-store", **unusable).returncode == 2
    short = ask("plain", **unusable)
    assert full.returncode == short.returncode == 0, short.stderr
    assert full.stdout == short.stdout == b"hello\n"
    # escapes (non-ASCII text, bytes) are the full path's: answered the same
    assert ask("job1").stdout == "hello é\n".encode()
    as_json = _json.loads(ask("job1", "--json").stdout)
    assert as_json["stdout"] == "hello é\n" and as_json["runs"] == 1 and as_json["received"]
    failed = ask("bad")
    assert failed.returncode == 1 and failed.stderr.decode().endswith(
        "oops\nsendjob: job bad failed: exit code 3\n")
    assert ask("bin").stdout == b"\x00\x01\x02\xff"  # bytes: printed exactly
    config.write_text(f"client: {{result_store: {second}}}\n# edited\n")
    assert ask("job1").stdout == b"other\n"
