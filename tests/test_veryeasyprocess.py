"""veryeasyprocess against real processes: the whole group dies, nothing is left behind."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from worker_client.veryeasyprocess import Runner, shell_2_tempfile

from .helpers import wait_for


def pid_gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_timeout_kills_the_whole_group_including_background_grandchildren(tmp_path):
    pidfile = tmp_path / "pids"
    started = time.monotonic()
    result = shell_2_tempfile(f"sleep 60 & echo $! > {pidfile}; sleep 60", timeout=0.5)
    elapsed = time.monotonic() - started
    assert result.timed_out and result.exit_code is None
    assert elapsed < 10, elapsed  # at its 0.5 s timeout, not the 60 s sleep
    grandchild = int(pidfile.read_text())
    wait_for(lambda: pid_gone(grandchild), 2, f"grandchild {grandchild} to be gone")
    assert not os.path.exists(f"/proc/{result.pid}") or pid_gone(result.pid)


def test_leftovers_of_a_finished_command_are_killed(tmp_path):
    pidfile = tmp_path / "pids"
    result = shell_2_tempfile(f"sleep 60 & echo $! > {pidfile}; exit 0", timeout=5)
    assert result.ok and result.killed_leftovers == 1
    wait_for(lambda: pid_gone(int(pidfile.read_text())), 2, "the leftover sleep to be gone")


def test_exit_code_signal_and_output_are_reported():
    failed = shell_2_tempfile("echo out; echo err >&2; exit 3")
    assert (failed.exit_code, failed.signal, failed.ok) == (3, None, False)
    assert (failed.stdout, failed.stderr) == (b"out\n", b"err\n")
    killed = shell_2_tempfile("kill -9 $$")
    assert (killed.exit_code, killed.signal) == (None, 9)
    assert "SIGKILL" in killed.describe()


def test_argv_is_not_a_shell_and_binary_output_survives():
    result = shell_2_tempfile(["printf", "%s", "$(touch pwned); \xff"])
    assert result.stdout == "$(touch pwned); \xff".encode()
    binary = shell_2_tempfile(["head", "-c", "4", "/dev/zero"])
    assert binary.stdout == b"\0\0\0\0"
    raw = shell_2_tempfile("printf '\\377\\376'")
    assert raw.stdout == b"\xff\xfe"
    with pytest.raises(TypeError):
        Runner().run("echo a string without shell=True")


def test_huge_output_does_not_grow_memory():
    """100 MiB of output keep only their tail: measured in a fresh process (its peak RSS,
    VmHWM), where no earlier test's peak can hide the growth."""
    code = textwrap.dedent("""
        from worker_client.veryeasyprocess import shell_2_tempfile
        def peak():
            with open("/proc/self/status") as handle:
                return next(int(l.split()[1]) for l in handle if l.startswith("VmHWM:"))
        shell_2_tempfile(["true"], timeout=10)  # imports and first-use costs paid
        before = peak()
        result = shell_2_tempfile(["head", "-c", str(100 * 1024 * 1024), "/dev/zero"],
                                  timeout=60)
        print(result.stdout_size, len(result.stdout), peak() - before)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    size, kept, grown_kib = map(int, out.stdout.split())
    assert size == 100 * 1024 * 1024 and kept == 64 * 1024, out.stderr
    assert grown_kib < 10 * 1024, f"the peak RSS grew by {grown_kib} KiB"


def test_stdin_env_and_cwd(tmp_path):
    result = Runner().run(["sh", "-c", 'cat; echo "$X"; pwd'], cwd=tmp_path, env={"X": "y"},
                          stdin_data=b"in\x00put\n", timeout=5)
    assert result.stdout == b"in\x00put\ny\n" + str(tmp_path).encode() + b"\n"


def test_cancel_all_kills_running_commands():
    runner = Runner()
    results = []
    thread = threading.Thread(target=lambda: results.append(runner.run(["sleep", "30"], timeout=60)))
    thread.start()
    wait_for(runner.running_pids, 5, "the command to start")
    assert runner.cancel_all() == 1
    thread.join(5)
    assert results[0].cancelled and results[0].signal == 15


def test_shell_2_tty_streams_to_our_stdout():
    code = ("from worker_client.veryeasyprocess import shell_2_tty; "
            "r = shell_2_tty('echo streamed; exit 4', timeout=5); print('code', r.exit_code)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.stdout == "streamed\ncode 4\n"


def test_missing_program_is_exit_127_like_a_shell():
    result = shell_2_tempfile(["no-such-program-here", "x"])
    assert (result.exit_code, result.ok) == (127, False)
    assert b"cannot run no-such-program-here" in result.stderr


def _ignored_signals(output):
    line = next(x for x in output.decode().splitlines() if x.startswith("SigIgn:"))
    return int(line.split()[1], 16)


def test_commands_start_in_a_new_session_with_default_sigpipe():
    """Python ignores SIGPIPE and SIGXFSZ; a command must not inherit that (an ignored
    signal survives exec, and a shell cannot undo it), or `producer | head` never ends."""
    result = shell_2_tempfile("grep SigIgn /proc/self/status; ps -o sid= -p $$; echo $$")
    ignored = _ignored_signals(result.stdout)
    assert not ignored & (1 << (signal.SIGPIPE - 1)), hex(ignored)
    assert not ignored & (1 << (signal.SIGXFSZ - 1)), hex(ignored)
    session, pid = result.stdout.decode().split()[-2:]
    assert session == pid != str(os.getsid(0))



def test_reused_output_files_never_carry_a_previous_commands_output():
    """A thread's two output files are reused from command to command."""
    runner = Runner()
    outputs = [runner.run(["sh", "-c", script]) for script in
               ("printf abcdef; printf err >&2", "printf x", "true", "printf y >&2",
                "printf 12; sleep 0.01; printf 34")]
    assert [(r.stdout, r.stderr) for r in outputs] == [
        (b"abcdef", b"err"), (b"x", b""), (b"", b""), (b"", b"y"), (b"1234", b"")]
    assert [r.stdout_size for r in outputs] == [6, 1, 0, 0, 4]


@pytest.mark.parametrize("argv, env", [(["echo", "a\0b"], None), (["true"], {"X": "a\0b"}),
                                       (["true"], {"A=B": "c"})])
def test_a_nul_byte_or_bad_variable_name_is_refused_not_truncated(argv, env):
    with pytest.raises(ValueError):
        Runner().run(argv, env=env)


def test_a_command_gets_the_workers_environment_with_its_own_variables_replacing(monkeypatch):
    monkeypatch.setenv("GF_TEST_SHARED", "worker")
    monkeypatch.setenv("GF_TEST_KEPT", "kept")
    runner = Runner()  # takes the environment as it is now
    script = "env | grep '^GF_TEST_' | sort"
    first = runner.run(["sh", "-c", script], env={"GF_TEST_SHARED": "job", "GF_TEST_NEW": "1"})
    second = runner.run(["sh", "-c", script])
    assert first.stdout.decode().splitlines() == [
        "GF_TEST_KEPT=kept", "GF_TEST_NEW=1", "GF_TEST_SHARED=job"]
    assert second.stdout.decode().splitlines() == ["GF_TEST_KEPT=kept", "GF_TEST_SHARED=worker"]
