"""Hostile input and resource bounds, tried as an attacker and a careless user would: option
injection, huge jobs and outputs, secrets in files and logs, odd names on the admin
protocol, bad command lines, escaping processes."""
import base64
import json
import os
import socket
import struct
import subprocess
import sys
import time

import pytest

from gearman_frame.daemons.gearmand import free_port
from gearman_frame.wire import WireClient
from send_job_client import Job, JobClient

from .client_helpers import SENDJOB, client_config
from .helpers import queued, wait_for
from .test_admin import RUNADMIN, runadmin
from .test_veryeasyprocess import pid_gone
from .worker_helpers import RUNWORKERS, send, send_background

MiB = 1024 * 1024


def status_of(pid, field):
    """A VmRSS / VmHWM figure of a process, in KiB."""
    with open(f"/proc/{pid}/status") as handle:
        line = next(l for l in handle if l.startswith(field + ":"))
    return int(line.split()[1])


# --- option injection ------------------------------------------------------------------

def test_a_value_that_would_be_read_as_an_option_is_refused(gearmand, start_workers,
                                                              tmp_path):
    marker = tmp_path / "ran"
    functions = {
        "list": {"command": ["ls", "{path}"]},
        "list_shell": {"shell": "ls {path}"},
        "probe": {"command": ["sh", "-c", f"touch {marker}; echo \"$0\"", "{path}"]},
        "list_opt": {"command": ["ls", "{path}"], "allow_options": ["path"]},
        "inner": {"command": ["echo", "--label={path}"]},
    }
    start_workers([gearmand.address], functions)
    servers = [gearmand.address]
    for function in ("list", "list_shell", "probe"):
        result = send(servers, function, path="--version")
        assert result.status == "error" and "allow_options" in result.error, result
    assert not marker.exists()  # nothing ran
    allowed = send(servers, "list_opt", path="--version")
    assert allowed.ok and "coreutils" in allowed.stdout
    inside = send(servers, "inner", path="-x")  # not the start of an argument: data
    assert inside.ok and inside.stdout == "--label=-x\n"


def test_allow_options_must_name_a_template_field(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("functions: {f: {command: [ls, '{path}'], allow_options: [paht]}}\n")
    proc = subprocess.run([RUNWORKERS, "--config", str(path)], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 2 and "functions.f.allow_options" in proc.stderr


# --- memory and disk bounds ----------------------------------------------------------------

def _idle_worker(start_workers, gearmand, functions, **kwargs):
    worker = start_workers([gearmand.address], functions, threads=2, **kwargs)
    for _ in range(3):  # warm up: imports and buffers a first job brings
        assert send([gearmand.address], "small").ok
    return worker


def test_a_huge_job_and_a_million_kwargs_are_refused_without_growing_the_worker(
        gearmand, start_workers):
    worker = _idle_worker(start_workers, gearmand, {"small": {"command": ["true"]},
                                                    "echo": {"shell": "echo {a}"}})
    pid = worker.worker_pid()
    idle_rss, idle_peak = status_of(pid, "VmRSS"), status_of(pid, "VmHWM")
    client = WireClient([gearmand.address])
    # Given a 200 MB job
    big = client.submit("echo", b"{" + b" " * (200 * MiB) + b"}", unique="big", timeout=60)
    assert big.state == "FAILED"
    assert b"over worker.max_payload" in big.data_updates[-1]
    assert status_of(pid, "VmHWM") - idle_peak < 10 * 1024  # it was never held
    # and a job with a million kwargs
    kwargs = "".join(f'"k{i}":1,' for i in range(10 ** 6)).rstrip(",")
    many = f'{{"v":1,"id":"many","args":[],"kwargs":{{{kwargs}}}}}'.encode()
    refused = client.submit("echo", many, unique="many", timeout=60)
    assert refused.state == "FAILED" and b"max_kwargs" in refused.data_updates[-1]
    # Then the worker is back near idle after both
    wait_for(lambda: status_of(pid, "VmRSS") - idle_rss < 10 * 1024, 10, "RSS back to idle")
    assert send([gearmand.address], "small").ok


def test_floods_of_output_stay_within_bounds_and_leave_nothing_held(gearmand, start_workers,
                                                                    tmp_path):
    functions = {"small": {"command": ["true"]},
                 "raw_flood": {"command": ["head", "-c", str(300 * MiB), "/dev/zero"],
                               "stdin": "data"},
                 "json_flood": {"command": ["head", "-c", str(500 * MiB), "/dev/zero"],
                                "timeout": 60}}
    worker = _idle_worker(start_workers, gearmand, functions)
    other = start_workers([gearmand.address], {"hello": {"command": ["echo", "hi"]}},
                          name="other")
    pid = worker.worker_pid()
    idle_rss = status_of(pid, "VmRSS")
    raw = WireClient([gearmand.address]).submit("raw_flood", b"go", timeout=60)
    assert raw.state == "FAILED" and b"over output_limit" in raw.data_updates[-1]
    flood = send([gearmand.address], "json_flood", timeout=60)
    assert flood.ok and len(flood.stdout) == MiB and flood.truncated  # its output_limit
    assert flood.stdout_bytes == 500 * MiB
    assert status_of(pid, "VmHWM") - idle_rss < 10 * 1024
    # no output pipe and no spool or temp file is held once the jobs ended
    held = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    assert not [h for h in held if "(deleted)" in h], held
    assert sum(h.startswith("pipe:") for h in held) <= 1, held  # the keeper's pipe alone
    assert send([gearmand.address], "hello").stdout == "hi\n"  # another worker unaffected
    assert other.proc.poll() is None


# --- private files and clean logs ----------------------------------------------------------

def _variants(token):
    """The token as it may sit in a file: raw, or inside base64 at any alignment."""
    raw = token.encode()
    found = [raw]
    for pad in range(3):
        encoded = base64.b64encode(b"x" * pad + raw)
        found.append(encoded[4:-4])
    return found


def test_every_file_holding_job_data_is_owner_only_and_logs_keep_no_values(tmp_path):
    token = "s3cr3t-" + os.urandom(8).hex()
    umask = lambda: os.umask(0o022)  # noqa: E731 - what a careless shell would have
    port = free_port()
    home = tmp_path / "site"
    home.mkdir()
    config = home / "config.yaml"
    config.write_text(json.dumps({
        "servers": [f"127.0.0.1:{port}"],
        "logging": {"level": "INFO", "file": "logs/worker.log"},
        "client": {"timeout": 5, "resend": 0},
        "worker": {"name": "private", "threads": 1, "startup_timeout": 5},
        "functions": {"check": {"command": ["test", "-n", "{password}"]},
                      "queued_only": {"command": ["true", "{password}"]},
                      "fails": {"command": ["false", "{password}"]}}}))

    def run(*argv, **kwargs):
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=home,
                              preexec_fn=umask, **kwargs)
    assert run(RUNADMIN, "--config", str(config), "server", "start").returncode == 0
    worker = subprocess.Popen([RUNWORKERS, "--config", str(config), "--functions",
                               "check,fails"], cwd=home,
                              preexec_fn=umask, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        log = home / "logs" / "worker.log"  # relative: beside the config
        wait_for(lambda: log.exists() and "ready" in log.read_text(), 15, "the worker")
        # jobs that run, fail (dead letter), wait in the queue, are dumped, wait in the outbox
        assert run(SENDJOB, "--config", str(config), "run", "check",
                   f"password={token}").returncode == 0
        assert run(SENDJOB, "--config", str(config), "run", "fails", f"password={token}",
                   "--background").returncode == 0
        for _ in range(2):
            assert run(SENDJOB, "--config", str(config), "run", "queued_only",
                       f"password={token}", "--background").returncode == 0
        assert run(RUNADMIN, "--config", str(config), "clear", "queued_only", "--dump",
                   "dump.jsonl").returncode == 0
        assert run(SENDJOB, "--config", str(config), "run", "queued_only",
                   f"password={token}", "--background").returncode == 0
        wait_for(lambda: "dead-lettered" in log.read_text(), 10, "the dead letter")
    finally:
        worker.terminate()
        worker.wait(30)
        run(RUNADMIN, "--config", str(config), "server", "stop")
    assert run(SENDJOB, "--config", str(config), "run", "queued_only", f"password={token}",
               "--background").stdout.strip() == "outbox"
    # Then every file that holds the token is 0600, in folders that are 0700
    holding = []
    for folder, _dirs, files in os.walk(home):
        for name in files:
            path = os.path.join(folder, name)
            data = open(path, "rb").read()
            if any(v in data for v in _variants(token)):
                holding.append(path)
    names = {os.path.basename(p) for p in holding}
    assert {"dump.jsonl", f"queue-{port}.sqlite", "outbox.sqlite"} <= names, names
    for path in holding:
        assert os.stat(path).st_mode & 0o077 == 0, (path, oct(os.stat(path).st_mode))
        folder = os.path.dirname(path)
        while folder != str(home):
            assert os.stat(folder).st_mode & 0o077 == 0, folder
            folder = os.path.dirname(folder)
    assert log.stat().st_mode & 0o077 == 0
    text = log.read_text()
    assert token not in text and "fields: password" in text


def test_the_pidfile_is_readable_by_all(tmp_path):
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(f"servers: ['127.0.0.1:{port}']\n")
    assert runadmin(config, "server", "start").returncode == 0
    try:
        pidfile = tmp_path / "var" / "gearmand" / f"gearmand-{port}.pid"
        assert oct(pidfile.stat().st_mode & 0o777) == "0o644"
        assert oct((tmp_path / "var" / "gearmand").stat().st_mode & 0o777) == "0o700"
    finally:
        runadmin(config, "server", "stop")


def test_a_field_name_cannot_forge_a_log_line_and_values_are_cut(gearmand, start_workers):
    worker = start_workers([gearmand.address], {"echo": {"shell": "echo {a}"}},
                           extra_args=["--log-level", "DEBUG"])
    envelope = json.dumps({"v": 1, "id": "forge", "args": [],
                           "kwargs": {"a": "x" * 5000, "b\nFAKE ERROR line": 1}})
    WireClient([gearmand.address]).submit("echo", envelope.encode(), unique="forge",
                                          timeout=20)
    lines = worker.log().splitlines()
    assert not any(line.startswith("FAKE") for line in lines)
    assert any("b\\nFAKE ERROR line" in line for line in lines)
    assert max(len(line) for line in lines) < 3000  # the 5,000-character value was cut


def test_an_exec_failure_says_why_in_the_result(gearmand, start_workers):
    start_workers([gearmand.address], {"big": {"command": ["echo", "{a}"]}})
    result = send([gearmand.address], "big", a="x" * (200 * 1024))  # over MAX_ARG_STRLEN
    assert result.status == "failed" and "E2BIG" in result.error, result


# --- the admin with odd names ------------------------------------------------------------

def _packet(kind, *fields):
    body = b"\0".join(fields)
    return b"\0REQ" + struct.pack(">II", kind, len(body)) + body


def test_odd_function_names_and_client_ids_do_not_blind_the_admin(gearmand, start_workers,
                                                                  tmp_path):
    evil = socket.create_connection((gearmand.host, gearmand.port))
    evil.sendall(_packet(22, b"a client id with spaces")
                 + _packet(1, b"tab\there\nand a newline") + _packet(1, b"[red]markup"))
    # a terminal's escape sequences in a name and a client id: shown escaped, never run
    sly = socket.create_connection((gearmand.host, gearmand.port))
    sly.sendall(_packet(22, b"esc\x1b[31mred") + _packet(1, b"fn\x1b[2Jclear"))
    worker = start_workers([gearmand.address], {"nap": {"command": ["sleep", "{s}"]}},
                           name="plain")
    try:
        path, config = client_config(tmp_path, [gearmand.address])
        with JobClient(config) as client:
            client.submit_many([Job.of("nap", s=1) for _ in range(3)], background=True)
        status = runadmin(path, "status")
        assert status.returncode == 0 and "nap" in status.stdout
        assert "left out" in status.stderr  # the unparsable line, counted
        workers = runadmin(path, "workers")
        assert workers.returncode == 0 and "plain" in workers.stdout
        assert "[red]markup" in workers.stdout  # shown as text
        for shown in (status.stdout, workers.stdout):
            assert "\x1b" not in shown
        assert "fn\\x1b[2Jclear" in status.stdout
        assert "esc\\x1b[31mred" in workers.stdout
        as_json = json.loads(runadmin(path, "workers", "--json").stdout)
        assert "a client id with spaces" in {row["client_id"] for row in as_json}
        dump = tmp_path / "dump.jsonl"
        cleared = runadmin(path, "clear", "nap", "--dump", str(dump))
        assert cleared.returncode == 0, cleared.stderr
        assert runadmin(path, "shutdown", "plain").returncode == 0
        worker.proc.wait(30)
    finally:
        evil.close()
        sly.close()


# --- bad command lines and configs ------------------------------------------------------

BOMB = "\n".join(["logging:", "  level:", '    - &a ["l","l","l","l","l","l","l","l","l"]']
                 + [f"    - &{b} [{','.join([f'*{a}'] * 9)}]"
                    for a, b in zip("abcdefgh", "bcdefghi")]) + "\n"


@pytest.mark.parametrize("argv", [
    ["sendjob", "plugin", "../../x"],
    ["sendjob", "plugin", ""],
    ["sendjob", "run", "f", "k=" + "[" * 50000],
    ["sendjob", "run", "f", "k=1", "--timeout", "nan"],
    ["sendjob", "run", "f", "k=1", "--timeout", "-1"],
    ["runadmin", "server", "start", "--port", "99999"],
    ["runadmin", "server", "start", "--port", "-1"],
    ["runworkers", "--functions", ","],
    ["runworkers", "--threads", "100000000"],
])
def test_bad_command_lines_are_one_line_and_exit_2(tmp_path, argv):
    (tmp_path / "config.yaml").write_text(
        f"servers: ['127.0.0.1:{free_port()}']\nfunctions: {{f: {{command: [echo, '{{k}}']}}}}\n")
    binary = os.path.join(os.path.dirname(sys.executable), argv[0])
    started = time.monotonic()
    proc = subprocess.run([binary, "--config", "config.yaml", *argv[1:]], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert time.monotonic() - started < 20


def test_sigterm_during_start_up_is_honoured(gearmand, tmp_path):
    (tmp_path / "config.yaml").write_text(
        f"servers: ['{gearmand.address}']\nworker: {{threads: 1024}}\n"
        "functions: {f: {command: ['true']}}\n")
    proc = subprocess.Popen([RUNWORKERS, "--config", "config.yaml"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.7)  # imports done, threads starting
    started = time.monotonic()
    proc.terminate()
    assert proc.wait(30) == 0
    assert time.monotonic() - started < 15


def test_a_yaml_alias_bomb_is_refused_within_a_second(tmp_path):
    (tmp_path / "config.yaml").write_text(BOMB)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "gearman_frame", "check", "--config",
                           "config.yaml"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "logging.level" in proc.stderr
    assert time.monotonic() - started < 15  # the bomb once hung the loader for 30 s
    assert len(proc.stderr) < 400


def test_a_non_utf8_value_travels_as_bytes(gearmand, start_workers, tmp_path):
    start_workers([gearmand.address], {"hexdump": {"command": ["printf", "%s", "{v}"]}})
    path, _config = client_config(tmp_path, [gearmand.address])
    proc = subprocess.run([SENDJOB.encode(), b"--config", str(path).encode(), b"run",
                           b"hexdump", b"v=a\xffb"], capture_output=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == b"a\xffb", proc.stderr


def test_a_closed_client_and_kwargs_json_would_change_are_refused(gearmand, tmp_path):
    _path, config = client_config(tmp_path, [gearmand.address])
    with JobClient(config) as client:
        for bad in ({"s": {1, 2}}, {"d": {1: "x"}}, {"f": float("nan")}, {"f": float("inf")}):
            with pytest.raises(ValueError):
                client.submit_background("anything", **bad)
    with pytest.raises(Exception, match="closed"):
        client.submit_background("anything", n=1)
    assert queued(gearmand, "anything") == 0


# --- escaped processes ---------------------------------------------------------------------

def _left(marks):
    pids = [int(p) for f in marks.iterdir() for p in f.read_text().split()]
    return [pid for pid in pids if not pid_gone(pid)]


@pytest.mark.parametrize("script", [
    "setsid sh -c 'sleep 300 & echo $! >> {m}/inner; sleep 300' & echo $! > {m}/outer; "
    "sleep 0.3",
    "setsid env -i sleep 300 & echo $! > {m}/outer; sleep 0.3",
])
def test_nested_and_env_cleared_escapes_are_killed_when_the_command_ends(gearmand,
                                                                         start_workers,
                                                                         tmp_path, script):
    marks = tmp_path / "marks"
    marks.mkdir()
    start_workers([gearmand.address], {"escape": {"shell": script.replace("{m}", str(marks))}})
    result = send([gearmand.address], "escape")
    outer = int((marks / "outer").read_text())
    # the process that left the command's group is named by its pid (what it started may
    # be named too, when found before its group was killed; all are gone: checked below)
    assert result.ok and outer in (result.escaped or ()), (outer, result.escaped)
    wait_for(lambda: not _left(marks), 5, "every escaped process to be gone")


def test_a_setsid_child_dies_with_its_sigkilled_worker(gearmand, start_workers, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    functions = {"daemon": {"shell": f"setsid sleep 300 & echo $! > {marks}/child; sleep 300",
                            "timeout": 600}}
    worker = start_workers([gearmand.address], functions)
    send_background([gearmand.address], "daemon")
    wait_for(lambda: (marks / "child").exists() and (marks / "child").read_text(), 10,
             "the command to start its child")
    worker.kill()
    wait_for(lambda: not _left(marks), 5, "the setsid child to be killed by the keeper")



def test_an_env_cleared_escape_dies_with_its_sigkilled_worker(gearmand, start_workers,
                                                              tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    functions = {"daemon": {"shell": f"setsid env -i sleep 300 & echo $! > {marks}/child; "
                                     "sleep 300", "timeout": 600}}
    worker = start_workers([gearmand.address], functions)
    send_background([gearmand.address], "daemon")
    wait_for(lambda: (marks / "child").exists() and (marks / "child").read_text(), 10,
             "the command to start its child")
    time.sleep(1.5)  # the worker notes what left a running command's group every second
    worker.kill()
    wait_for(lambda: not _left(marks), 5, "the env-cleared child to be killed by the keeper")
