"""Nothing lost, nothing run twice: a full disk under a clear, a failing handler, concurrent
flushes, a refused dead letter, two workers of one name, a broken outbox."""
import base64
import os
import resource
import signal
import sqlite3
import subprocess
import time


from gearman_frame.addresses import parse_address
from gearman_frame.envelope import dumps, loads
from gearman_frame.queues import dead_letter_function
from gearman_frame.wire import WireClient
from manage_client.admin import AdminClient
from manage_client.drain import read_dump
from send_job_client import OUTBOX, Job, JobClient
from send_job_client.outbox import Outbox

from ..client_helpers import (SENDJOB, client_config, fill_outbox_while_down, ledger_lines,
                              sendjob, start_recorder)
from ..filesystems import read_only_later, small_filesystem
from ..helpers import queued, wait_for
from ..test_admin import RUNADMIN, runadmin
from ..worker_helpers import send_background


def uniques_in(dump):
    jobs, bad = read_dump(dump)
    assert bad == []
    return [job["unique"] for job in jobs]


# --- clear and resend ---------------------------------------------------------------------

def test_clear_onto_a_full_filesystem_keeps_every_job_dumped_or_queued(gearmand, tmp_path,
                                                                       func_name):
    path, config = client_config(tmp_path, [gearmand.address])
    with JobClient(config) as client:
        deliveries = client.submit_many([Job.of(func_name, blob="x" * 400, i=i)
                                         for i in range(200)], background=True)
    sent = {d.id for d in deliveries}
    assert len(sent) == 200 and queued(gearmand, func_name) == 200
    # When the dump's filesystem fills up half way
    with small_filesystem(tmp_path / "small", 64 * 1024) as (folder, preexec):
        dump = folder / "dump.jsonl"
        proc = subprocess.run([RUNADMIN, "--config", str(path), "clear", func_name, "--dump",
                               str(dump)], capture_output=True, text=True, timeout=120,
                              preexec_fn=preexec)
        # Then: exit 1, one line saying how many were dumped and that the rest wait
        assert proc.returncode == 1, proc.stderr
        message = [line for line in proc.stderr.splitlines() if line.startswith("runadmin:")]
        assert len(message) == 1 and "still queued" in message[0], proc.stderr
        assert "Traceback" not in proc.stderr
        text = dump.read_bytes()
        assert text.endswith(b"\n")  # no line cut short
        dumped = uniques_in(dump)
    assert 0 < len(dumped) < 200
    assert f"dumped {len(dumped)} job(s)" in message[0]
    # and every job is either a whole line in the dump or still queued
    assert queued(gearmand, func_name) == 200 - len(dumped)
    rest = tmp_path / "rest.jsonl"
    assert runadmin(path, "clear", func_name, "--dump", str(rest)).returncode == 0
    assert sorted(dumped + uniques_in(rest)) == sorted(sent)


def test_clear_into_a_missing_folder_or_a_directory_exits_2(gearmand, tmp_path, func_name):
    path, _config = client_config(tmp_path, [gearmand.address])
    for target in (tmp_path / "missing" / "dump.jsonl", tmp_path):
        proc = runadmin(path, "clear", func_name, "--dump", str(target))
        assert proc.returncode == 2 and str(target) in proc.stderr
        assert proc.stderr.startswith("runadmin: error: --dump") and "Traceback" not in \
            proc.stderr


def _dump_line(function, unique, data, priority="normal"):
    return dumps({"function": function, "unique": unique, "priority": priority,
                  "background": True, "data": data}) + b"\n"


def test_resend_sends_the_good_lines_and_names_each_bad_one(gearmand, tmp_path, func_name):
    path, _config = client_config(tmp_path, [gearmand.address])
    dump = tmp_path / "dump.jsonl"
    huge = base64.b64encode(b"\0" * 3).decode() * (23 << 20)  # 69 MB once decoded
    dump.write_bytes(
        _dump_line(func_name, "good1", b"one")
        + b"garbage that is not json\n"
        + _dump_line(func_name, "badprio", b"x", priority="urgent")
        + b'{"function": "f", "unique": "deep", "data": ' + b"[" * 50000 + b"]" * 50000
        + b"}\n"
        + b'{"function": "f", "unique": "huge", "data": {"__b64__": "' + huge.encode()
        + b'"}}\n'
        + _dump_line(func_name, "good2", b"two"))
    # --strict: one bad line and nothing is sent
    strict = runadmin(path, "resend", str(dump), "--strict")
    assert strict.returncode == 1 and queued(gearmand, func_name) == 0
    # default: the good lines go back, each bad one is named by its line number
    proc = runadmin(path, "resend", str(dump))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "resent 2 job(s)" in proc.stdout and "4 bad line(s)" in proc.stdout
    for number in (2, 3, 4, 5):
        assert f"{dump}:{number}: bad line" in proc.stderr
    assert "priority 'urgent'" in proc.stderr and "job limit" in proc.stderr
    assert queued(gearmand, func_name) == 2


# --- the worker: every failure ends as a result -------------------------------------------

MALFORMED = {
    "nul_in_id": b'{"v":1,"id":"ab\\u0000cd","args":[],"kwargs":{"word":"x"},"bg":true}',
    "dict_on_stdin": b'{"v":1,"id":"dictstdin","args":[{"a":1}],"kwargs":{},"bg":true}',
    "deep_json": b'{"v":1,"id":"deep","args":' + b"[" * 50000 + b"]" * 50000 + b',"bg":true}',
    "lone_surrogate": b'{"v":1,"id":"surrogate","args":[],"kwargs":{"word":"\\ud800"},'
                      b'"bg":true}',
}


def test_malformed_background_envelopes_are_dead_lettered_never_dropped(gearmand,
                                                                        start_workers,
                                                                        tmp_path):
    functions = {"echo_word": {"command": ["echo", "{word}"]},
                 "upper": {"command": ["tr", "a-z", "A-Z"], "stdin": "data"}}
    worker = start_workers([gearmand.address], functions, threads=1)
    client = WireClient([gearmand.address])
    for name, data in MALFORMED.items():
        function = "upper" if name == "dict_on_stdin" else "echo_word"
        client.submit(function, data, unique=name, background=True, timeout=10)
    dead = {f: dead_letter_function(f) for f in functions}
    wait_for(lambda: queued(gearmand, dead["echo_word"]) == 3
             and queued(gearmand, dead["upper"]) == 1, 20, "four dead letters")
    assert queued(gearmand, "echo_word") == queued(gearmand, "upper") == 0
    assert worker.proc.poll() is None
    # each dead letter says why
    dump = tmp_path / "dead.jsonl"
    path, _config = client_config(tmp_path, [gearmand.address])
    assert runadmin(path, "clear", dead["echo_word"], "--dump", str(dump)).returncode == 0
    reasons = [loads(loads(line)["data"])["result"]["error"]
               for line in dump.read_bytes().splitlines()]
    assert any("nested too deeply" in r for r in reasons), reasons
    assert all(r for r in reasons)


def test_worker_out_of_descriptors_loses_no_background_job(gearmand, start_workers, tmp_path):
    ledger = tmp_path / "ledger"
    functions = {"note": {"shell": "echo {i} >> " + str(ledger)}}
    # Given a worker whose descriptor limit leaves room for about one command at a time
    tight = start_workers([gearmand.address], functions, name="tight", threads=4)
    pid = tight.worker_pid()
    in_use = len(os.listdir(f"/proc/{pid}/fd"))
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (in_use + 6, in_use + 6))
    sent = [send_background([gearmand.address], "note", i=i) for i in range(40)]
    wait_for(lambda: "too many open files" in tight.log().lower(), 20, "the limit to bite")
    time.sleep(3)
    assert tight.stop() == 0  # a graceful stop: what it holds goes back to gearmand
    # Then every job ran, was dead-lettered, spooled, or is still queued: none vanished
    dead = dead_letter_function("note")
    path, _config = client_config(tmp_path, [gearmand.address])
    dump = tmp_path / "dead.jsonl"
    assert runadmin(path, "clear", dead, "--dump", str(dump)).returncode == 0
    dead_ids = {job["unique"] for job in read_dump(dump)[0]}
    spool = tight.folder / "var" / "spool" / "dead-letters"
    spooled = {loads(f.read_bytes())["unique"] for f in spool.glob("*.dead")} \
        if spool.exists() else set()
    ran = {sent[int(i)] for i in ledger_lines(ledger)}
    waiting = tmp_path / "waiting.jsonl"
    assert runadmin(path, "clear", "note", "--dump", str(waiting)).returncode == 0
    queued_ids = {job["unique"] for job in read_dump(waiting)[0]}
    assert ran | dead_ids | spooled | queued_ids == set(sent)
    assert dead_ids or spooled or queued_ids  # the fault did hit some jobs


def _status(server):
    with AdminClient([parse_address(server.address)]) as admin:
        return admin.status()


# --- dead letters that gearmand refuses -----------------------------------------------------

def test_a_refused_dead_letter_waits_on_disk_and_the_job_runs_once(gearmand, start_workers,
                                                                   tmp_path):
    ledger = tmp_path / "ledger"
    dead = dead_letter_function("flop")
    with AdminClient([parse_address(gearmand.address)]) as admin:
        admin.create_function(dead)
        admin.maxqueue(dead, 1)
    WireClient([gearmand.address]).submit(dead, b"filler", unique="filler", background=True,
                                          timeout=10)
    functions = {"flop": {"shell": "echo run >> " + str(ledger) + "; exit 1", "retries": 0}}
    worker = start_workers([gearmand.address], functions, threads=2)
    send_background([gearmand.address], "flop")
    # Given a full dead-letter queue, the failing job runs once, its letter is spooled
    wait_for(lambda: "kept in" in worker.log(), 10, "the dead letter to be spooled")
    time.sleep(3)
    assert ledger_lines(ledger) == ["run"]
    spool = worker.folder / "var" / "spool" / "dead-letters"
    assert len(os.listdir(spool)) == 1
    assert oct(os.stat(spool).st_mode & 0o777) == "0o700"
    letter = spool / os.listdir(spool)[0]
    assert oct(os.stat(letter).st_mode & 0o777) == "0o600"  # the job's data: owner only
    assert loads(letter.read_bytes())["function"] == dead_letter_function("flop")
    # When the queue has room, the letter arrives and leaves the spool
    path, _config = client_config(tmp_path, [gearmand.address])
    assert runadmin(path, "maxqueue", dead, "10").returncode == 0
    wait_for(lambda: queued(gearmand, dead) == 2, 40, "the spooled dead letter to arrive")
    wait_for(lambda: os.listdir(spool) == [], 5, "the spool to be emptied")
    assert ledger_lines(ledger) == ["run"]


def test_server_start_passes_job_retries_from_the_config(tmp_path):
    from gearman_frame.daemons.gearmand import free_port
    port = free_port()
    path = tmp_path / "config.yaml"
    path.write_text(f"servers: ['127.0.0.1:{port}']\nserver: {{job_retries: 3}}\n")
    started = runadmin(path, "server", "start", "--data-dir", str(tmp_path / "g"))
    try:
        assert started.returncode == 0, started.stderr
        pid = int((tmp_path / "g" / f"gearmand-{port}.pid").read_text())
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        assert argv[argv.index(b"--job-retries") + 1] == b"3"
    finally:
        runadmin(path, "server", "stop", "--data-dir", str(tmp_path / "g"))


# --- the outbox ------------------------------------------------------------------------

def test_six_concurrent_flushes_deliver_each_job_once(restartable_gearmand, start_workers,
                                                      plugin_dir, tmp_path):
    server = restartable_gearmand
    path, config = client_config(tmp_path, [server.address], resend=0)
    ledger = tmp_path / "ledger"
    fill_outbox_while_down(server, config, ledger, 300)
    start_recorder(start_workers, [server.address], plugin_dir, threads=4)
    # When six flushes run at once
    flushes = [subprocess.Popen([SENDJOB, "--config", str(path), "flush"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(6)]
    outputs = [proc.communicate(timeout=120) for proc in flushes]
    assert [proc.returncode for proc in flushes] == [0] * 6, outputs
    delivered = sum(int(out.split("outbox: ")[1].split()[0]) for out, _err in outputs)
    assert delivered == 300
    # Then every job runs exactly once
    wait_for(lambda: len(ledger_lines(ledger)) >= 300, 60, "300 jobs")
    time.sleep(1.0)
    assert sorted(ledger_lines(ledger)) == sorted(f"job{i}" for i in range(300))


def test_background_send_to_a_frozen_server_runs_once_after_the_thaw(make_gearmand,
                                                                      start_workers,
                                                                      plugin_dir, tmp_path):
    # two servers, a worker on each: a copy the flush sent to the other server would run
    gearmand, other = make_gearmand(), make_gearmand()
    path, config = client_config(tmp_path, [gearmand.address, other.address], timeout=1,
                                 resend=1)
    ledger = tmp_path / "ledger"
    start_recorder(start_workers, [gearmand.address, other.address], plugin_dir, threads=2)
    gearmand.signal(signal.SIGSTOP)
    try:
        proc = sendjob(path, "run", "record", f"ledger={ledger}", "word=once", "sleep=3",
                       "--background")
    finally:
        gearmand.signal(signal.SIGCONT)
    # Given a server that took the request but never answered: kept, in doubt at it
    assert (proc.returncode, proc.stdout.strip()) == (0, OUTBOX), proc.stderr
    wait_for(lambda: any(r.running for r in _status(gearmand) if r.function == "record"), 10,
             "the thawed server to hand the job out")
    # When the outbox is flushed, by a sender whose first server is the other one: the
    # frozen server says it holds the job, so it is not sent again (anywhere)
    reordered = path.with_name("reordered.yaml")
    reordered.write_text(path.read_text().replace(
        f"- {gearmand.address}\n- {other.address}", f"- {other.address}\n- {gearmand.address}"))
    assert reordered.read_text() != path.read_text()
    flushed = sendjob(reordered, "flush")
    assert flushed.returncode == 0 and "1 delivered, 0 waiting" in flushed.stdout
    assert not any(r.queued or r.running for r in _status(other) if r.function == "record")
    wait_for(lambda: ledger_lines(ledger), 15, "the job to finish")
    # a second copy sent by the flush would have started by now and ends 3 s after: wait
    # that long for it
    time.sleep(4)
    assert ledger_lines(ledger) == ["once"]


def test_foreground_run_never_waits_for_the_outbox(gearmand, start_workers, plugin_dir,
                                                   tmp_path):
    path, config = client_config(tmp_path, [gearmand.address])
    outbox = Outbox(config.resolve(config.client.outbox))
    for i in range(2000):
        outbox.put(Job.of("nobody_serves_this", i=i))
    start_recorder(start_workers, [gearmand.address], plugin_dir)
    proc = sendjob(path, "run", "reverse", "text=abc", timeout=20)
    assert (proc.returncode, proc.stdout) == (0, 'cba'), proc.stderr
    assert len(outbox) == 2000


def test_corrupt_outbox_is_moved_aside_and_foreground_is_unaffected(gearmand, start_workers,
                                                                    plugin_dir, tmp_path):
    path, config = client_config(tmp_path, [gearmand.address])
    start_recorder(start_workers, [gearmand.address], plugin_dir)
    outbox = config.resolve(config.client.outbox)
    with open(outbox, "wb") as handle:
        handle.write(b"this is not a database" * 100)
    assert sendjob(path, "run", "reverse", "text=abc").stdout == 'cba'
    flushed = sendjob(path, "flush")
    assert flushed.returncode == 2 and outbox in flushed.stderr
    assert "moved aside" in flushed.stderr and "Traceback" not in flushed.stderr
    aside = [n for n in os.listdir(os.path.dirname(outbox)) if ".corrupt-" in n]
    assert len(aside) == 1  # kept, never deleted
    assert sendjob(path, "flush").returncode == 0  # a new outbox starts empty


def test_read_only_outbox_fails_flush_with_exit_2_and_foreground_works(restartable_gearmand,
                                                                       start_workers,
                                                                       plugin_dir, tmp_path):
    server = restartable_gearmand
    with read_only_later(tmp_path / "box") as make_read_only:
        path, config = client_config(tmp_path, [server.address], resend=0)
        text = path.read_text().replace("outbox.sqlite", "box/outbox.sqlite")
        path.write_text(text)
        server.stop()
        assert sendjob(path, "run", "reverse", "text=x", "--background").stdout.strip() == OUTBOX
        server.start()
        start_recorder(start_workers, [server.address], plugin_dir)
        make_read_only()
        assert sendjob(path, "run", "reverse", "text=abc").stdout == 'cba'
        flushed = sendjob(path, "flush")
        assert flushed.returncode == 2, flushed.stderr
        assert "box/outbox.sqlite" in flushed.stderr and "Traceback" not in flushed.stderr
        assert flushed.stderr.startswith("sendjob: error: outbox")


def test_locked_outbox_is_exit_2_naming_the_file(gearmand, tmp_path):
    path, config = client_config(tmp_path, [gearmand.address])
    outbox = Outbox(config.resolve(config.client.outbox))
    outbox.put(Job.of("anything"))
    holder = sqlite3.connect(outbox.path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        flushed = sendjob(path, "flush")
        assert flushed.returncode == 2 and outbox.path in flushed.stderr
        assert "locked" in flushed.stderr and time.monotonic() - started < 20
    finally:
        holder.execute("ROLLBACK")
        holder.close()


# --- workers that share a name ------------------------------------------------------------

def test_a_second_worker_of_the_same_name_is_refused(gearmand, start_workers, tmp_path):
    functions = {"nap": {"command": ["sleep", "{s}"]}}
    first = start_workers([gearmand.address], functions, name="twin")
    second = subprocess.run(
        [os.path.join(os.path.dirname(SENDJOB), "runworkers"), "--config", str(first.config)],
        capture_output=True, text=True, timeout=30, cwd=first.folder)
    assert second.returncode == 2
    assert "'twin' already runs here" in second.stderr and f"pid {first.worker_pid()}" in \
        second.stderr
    assert first.proc.poll() is None


def test_each_worker_kills_only_its_own_commands(gearmand, start_workers, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    functions = {"hold": {"shell": "sleep 30 & echo $! > " + str(marks) + "/{tag}; wait",
                          "timeout": 60}}
    # Given two workers that share one config folder (and so var/run), one command each
    one = start_workers([gearmand.address], functions, name="one", threads=1)
    with open(one.folder / "two.log", "ab") as log:
        two = subprocess.Popen([os.path.join(os.path.dirname(SENDJOB), "runworkers"),
                                "--config", str(one.config), "--name", "two"],
                               stdout=log, stderr=subprocess.STDOUT, cwd=one.folder)
    try:
        wait_for(lambda: "ready:" in (one.folder / "two.log").read_text(), 15, "worker two")
        send_background([gearmand.address], "hold", tag="a")
        send_background([gearmand.address], "hold", tag="b")
        wait_for(lambda: len(os.listdir(marks)) == 2, 15, "both commands to start")
        pids = [int((marks / tag).read_text()) for tag in ("a", "b")]
        # When one worker is SIGKILLed, only its own command dies
        one.kill()
        wait_for(lambda: not all(_alive(pid) for pid in pids), 15, "its command to die")
        assert sorted(_alive(pid) for pid in pids) == [False, True]
    finally:
        two.kill()
        two.wait(10)
    wait_for(lambda: not any(_alive(pid) for pid in pids), 5, "the other command to die")


def _alive(pid):
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"

