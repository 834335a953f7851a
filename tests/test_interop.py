"""Speaking with other Gearman parties: envelopes parsed in any key order and spacing, raw
JSON passed through, foreign workers' exceptions and streams, flags anywhere, foreign
names in the admin."""
import json
import os
import subprocess
import time

from gearman_frame.addresses import parse_address
from gearman_frame.envelope import Result
from gearman_frame.wire import WireClient
from manage_client.admin import AdminClient
from manage_client.drain import read_dump

from .client_helpers import SENDJOB, client_config, sendjob
from .foreign import (WORK_COMPLETE, WORK_DATA, WORK_EXCEPTION, WORK_FAIL, WORK_WARNING,
                      ForeignWorker)
from .helpers import queued, wait_for
from .test_admin import runadmin

ENVELOPES = {
    "sorted keys (Perl canonical)": b'{"args":[],"id":"a1","kwargs":{"word":"hi"},"v":1}',
    "spaces and an escape": b'{ "v" : 1 , "id" : "a2" , "kwargs" : { "word" : "\\u00e9t\\u00e9" } }',
    "v last, no args": b'{"id":"a3","kwargs":{"word":"x"},"sent_at":1,"v":1}',
    "PHP empty kwargs": b'{"v":1,"id":"a4","args":[],"kwargs":[]}',
}


def test_envelopes_in_any_key_order_and_spacing_run(gearmand, start_workers):
    start_workers([gearmand.address], {"say": {"shell": "echo {word}"},
                                       "hello": {"command": ["echo", "hello"]}})
    client = WireClient([gearmand.address])
    results = {}
    for name, data in ENVELOPES.items():
        function = "hello" if "empty" in name else "say"
        request = client.submit(function, data, unique=name[:20], timeout=20)
        results[name] = Result.decode(request.result)
    assert [r.status for r in results.values()] == ["ok"] * 4, results
    assert results["spaces and an escape"].stdout == "été\n"
    assert results["PHP empty kwargs"].stdout == "hello\n"


def test_raw_json_and_bytes_pass_through_a_stdin_data_function(gearmand, start_workers):
    start_workers([gearmand.address], {"echo_raw": {"command": ["cat"], "stdin": "data"}})
    client = WireClient([gearmand.address])
    for data in (b'{"user":"bob","meta":{"v":2}}', b'  {"v": 1}', b"\xff\x00not json",
                 b"[1, 2]", b'{"v":"1","id":"x"}'):
        assert client.submit("echo_raw", data, timeout=20).result == data


def test_a_foreign_workers_exception_ends_the_job_at_once_and_runs_it_once(gearmand,
                                                                            tmp_path):
    foreign = ForeignWorker((gearmand.host, gearmand.port), "php_job",
                            lambda handle, data: [(WORK_EXCEPTION, (b"boom",))])
    # a 30 s timeout: an exception that did not end the job would wait for it
    path, _config = client_config(tmp_path, [gearmand.address], timeout=30)
    started = time.monotonic()
    proc = sendjob(path, "run", "php_job", "--data", "x")
    assert proc.returncode == 1 and time.monotonic() - started < 15, proc.stderr
    assert "boom" in proc.stderr  # asked for exceptions: the text comes with the failure
    time.sleep(1)
    assert len(foreign.jobs) == 1
    bare = ForeignWorker((gearmand.host, gearmand.port), "bare_fail",
                         lambda handle, data: [(WORK_FAIL, ())])
    started = time.monotonic()
    proc = sendjob(path, "run", "bare_fail", "--data", "x")
    assert proc.returncode == 1 and time.monotonic() - started < 15
    assert len(bare.jobs) == 1
    foreign.close()
    bare.close()


def test_streamed_chunks_and_warnings_reach_the_sender_in_order(gearmand, tmp_path):
    def stream(handle, data):
        return [(WORK_DATA, (b"chunk1;",)), (WORK_WARNING, (b"careful\n",)),
                (WORK_DATA, (b"chunk2;",)), (WORK_COMPLETE, (b"final",))]
    foreign = ForeignWorker((gearmand.host, gearmand.port), "streamer", stream)
    path, _config = client_config(tmp_path, [gearmand.address])
    proc = sendjob(path, "run", "streamer", "--data", "x")
    assert proc.returncode == 0 and proc.stdout == "chunk1;chunk2;final"
    assert "careful" in proc.stderr
    foreign.close()


def test_flags_after_the_subcommand_and_binary_data_from_stdin_or_a_file(gearmand,
                                                                        start_workers,
                                                                        tmp_path):
    start_workers([gearmand.address], {"echo_raw": {"command": ["cat"], "stdin": "data"}})
    path, _config = client_config(tmp_path, [gearmand.address])
    blob = bytes(range(256)) * 4
    proc = subprocess.run([SENDJOB, "run", "echo_raw", "--data", "-", "--config", str(path)],
                          input=blob, capture_output=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == blob, proc.stderr
    (tmp_path / "blob").write_bytes(blob[::-1])
    proc = subprocess.run([SENDJOB, "run", "echo_raw", "--data-file", str(tmp_path / "blob"),
                           "--config", str(path)], capture_output=True, timeout=60)
    assert proc.stdout == blob[::-1]
    status = runadmin(path, "status", "--json")  # (--config first: runadmin's helper)
    assert status.returncode == 0
    moved = subprocess.run([SENDJOB.replace("sendjob", "runadmin"), "status", "--json",
                            "--config", str(path)], capture_output=True, text=True, timeout=60)
    assert moved.returncode == 0 and json.loads(moved.stdout) == json.loads(status.stdout)


def test_a_raw_job_in_a_dump_is_resent_only_with_all(gearmand, tmp_path, func_name):
    path, _config = client_config(tmp_path, [gearmand.address])
    WireClient([gearmand.address]).submit(func_name, b"raw bytes", background=True, timeout=5)
    dump = tmp_path / "dump.jsonl"
    assert runadmin(path, "clear", func_name, "--dump", str(dump)).returncode == 0
    plain = runadmin(path, "resend", str(dump))
    assert "skipped 1 foreground or raw job" in plain.stdout and queued(gearmand, func_name) == 0
    assert runadmin(path, "resend", str(dump), "--all").returncode == 0
    assert queued(gearmand, func_name) == 1


def test_foreign_names_stay_as_they_are_and_shutdown_refuses_them_at_once(gearmand,
                                                                          start_workers,
                                                                          tmp_path):
    parties = [ForeignWorker((gearmand.host, gearmand.port), "php_job",
                             lambda h, d: [(WORK_FAIL, ())], client_id=name)
               for name in (b"10.1.2.3", b"app.1", b"app.2")]
    start_workers([gearmand.address], {"nap": {"command": ["sleep", "{s}"]}}, name="ours",
                  threads=2)
    path, _config = client_config(tmp_path, [gearmand.address])
    table = runadmin(path, "workers").stdout
    for shown in ("10.1.2.3", "app.1", "app.2"):
        assert shown in table, table
    assert " 10.1.2 " not in table
    ours = [line for line in table.splitlines() if " ours " in line]
    assert len(ours) == 1 and " 3 " in ours[0]  # ours.0, ours.1, ours.ctl: one row
    refused = runadmin(path, "shutdown", "app")
    assert refused.returncode == 1 and "not a gearman-frame worker" in refused.stderr
    # refused before anything was sent: no control job waits for an answer
    with AdminClient([parse_address(gearmand.address)]) as admin:
        assert not [r for r in admin.status() if r.function == "__ctl__.app" and r.queued]
    for party in parties:
        party.close()



def test_a_raw_job_gets_retries_a_job_id_and_a_dead_letter_that_resends_its_bytes(
        gearmand, start_workers, tmp_path):
    runs = tmp_path / "runs"
    functions = {"raw_flaky": {"shell": f'echo "$GEARMAN_FRAME_JOB_ID" >> {runs}; cat >/dev/null;'
                                        " exit 3", "stdin": "data", "retries": 2,
                               "retry_delay": 0.05}}
    start_workers([gearmand.address], functions)
    payload = b"\x00raw \xff bytes"
    WireClient([gearmand.address]).submit("raw_flaky", payload, unique="rawjob",
                                          background=True, timeout=5)
    dead = "__dead__.raw_flaky"
    wait_for(lambda: queued(gearmand, dead) == 1, 20, "the raw job's dead letter")
    assert runs.read_text().split() == ["rawjob"] * 3  # 1 run + 2 retries, its id set
    path, _config = client_config(tmp_path, [gearmand.address])
    dump = tmp_path / "dead.jsonl"
    assert runadmin(path, "clear", dead, "--dump", str(dump)).returncode == 0
    (job,), _bad = read_dump(dump)
    assert (job["function"], job["data"]) == ("raw_flaky", payload)


PHP_WORKER = r'''<?php
$w = new GearmanWorker();
$w->addServer("127.0.0.1", (int) getenv("PORT"));
$w->addFunction("php_exc", function ($job) {
    file_put_contents(getenv("RUNS"), "exception\n", FILE_APPEND);
    $job->sendException("boom");
    return GEARMAN_WORK_EXCEPTION;
});
$w->addFunction("php_exit", function ($job) {
    file_put_contents(getenv("RUNS"), "exit\n", FILE_APPEND);
    exit(3);
});
while ($w->work());
'''


def test_a_php_worker_that_throws_or_exits_fails_the_job_at_once_and_once(gearmand,
                                                                         tmp_path):
    script, runs = tmp_path / "worker.php", tmp_path / "runs"
    script.write_text(PHP_WORKER)
    env = {**os.environ, "PORT": str(gearmand.port), "RUNS": str(runs)}
    path, _config = client_config(tmp_path, [gearmand.address], timeout=30)
    for function in ("php_exc", "php_exit"):
        worker = subprocess.Popen(["php", str(script)], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: any(r.function == function and r.workers
                                 for r in _status(gearmand)), 10, "the PHP worker")
            started = time.monotonic()
            proc = sendjob(path, "run", function, "--data", "x")
            assert proc.returncode == 1 and time.monotonic() - started < 15, proc.stderr
        finally:
            worker.kill()
            worker.wait(10)
    time.sleep(0.5)
    assert runs.read_text().split() == ["exception", "exit"]  # each ran once


def _status(server):
    with AdminClient([parse_address(server.address)]) as admin:
        return admin.status()
