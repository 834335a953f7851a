"""Local gearmand control through `runadmin server` and its API: real processes only."""
import socket
import subprocess
import sys

import pytest

from gearman_frame.errors import ServerControlError
from gearman_frame.daemons.gearmand import LocalGearmand, accepts_connections, free_port

from .helpers import queued, wait_for

pytestmark = pytest.mark.needs_gearmand


def runadmin(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "manage_client.runadmin", *args],
                          capture_output=True, text=True, timeout=60, cwd=cwd)


def test_start_status_stop_through_the_cli(tmp_path):
    port, data = str(free_port()), str(tmp_path / "data")
    common = ["--port", port, "--data-dir", data]
    started = runadmin("server", "start", *common)
    assert started.returncode == 0, started.stderr
    try:
        assert accepts_connections("127.0.0.1", int(port))
        assert (tmp_path / "data" / f"queue-{port}.sqlite").exists()
        status = runadmin("server", "status", *common)
        assert status.returncode == 0 and "running" in status.stdout
        again = runadmin("server", "start", *common)
        assert again.returncode == 2 and "already running" in again.stderr
    finally:
        stopped = runadmin("server", "stop", *common)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not accepts_connections("127.0.0.1", int(port))
    status = runadmin("server", "status", *common)
    assert status.returncode == 1 and "not running" in status.stdout


def test_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        result = runadmin("server", "start", "--port", port, "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert f"127.0.0.1:{port} is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_stale_pidfile_is_removed_and_never_signalled(tmp_path):
    # Given a pidfile naming a live process that is not our gearmand
    bystander = subprocess.Popen(["sleep", "60"])
    server = LocalGearmand(tmp_path, port=free_port(), queue="builtin")
    server.pidfile.write_text(f"{bystander.pid}\n")
    try:
        # When we ask for status, stop, and start
        assert server.status().stale_pidfile
        server.pidfile.write_text(f"{bystander.pid}\n")
        assert server.stop() is False
        server.pidfile.write_text(f"{bystander.pid}\n")
        pid = server.start()
        # Then the bystander was never signalled and our gearmand runs
        assert bystander.poll() is None
        assert pid != bystander.pid and server.status().running
    finally:
        server.stop()
        bystander.kill()
        bystander.wait()


def test_sigkilled_server_keeps_background_jobs_in_sqlite(restartable_gearmand, func_name):
    from gearman_frame.wire import WireClient
    from .wire_helpers import WorkerThread

    server = restartable_gearmand
    for i in range(3):
        WireClient([server.address]).submit(func_name, b"job%d" % i, background=True, timeout=5)
    server.kill()
    server.start()
    assert queued(server, func_name) == 3
    seen = []
    with WorkerThread([server.address], {func_name: lambda w, j: seen.append(j.data) or b""}):
        wait_for(lambda: len(seen) == 3, 10, "the three persisted jobs")
    assert sorted(seen) == [b"job0", b"job1", b"job2"]


def test_missing_binary_is_reported(tmp_path):
    server = LocalGearmand(tmp_path, port=free_port(), binary=str(tmp_path / "no-gearmand"))
    with pytest.raises(ServerControlError, match="gearman-job-server") as info:
        server.start()
    assert info.value.exit_code == 3


def test_a_perl_gearmand_script_is_named_and_never_run(tmp_path, monkeypatch):
    from gearman_frame.errors import ServerControlError
    from gearman_frame.daemons.gearmand import LocalGearmand, find_gearmand, is_c_gearmand
    fake = tmp_path / "bin" / "gearmand"
    fake.parent.mkdir()
    marker = tmp_path / "ran"
    fake.write_text(f"#!/bin/sh\ntouch {marker}\n")
    fake.chmod(0o755)
    # Given a Perl-style gearmand script first on PATH, the C one is still preferred
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    found = find_gearmand()
    assert found is not None and found != str(fake) and is_c_gearmand(found), found
    # and a script named as the server is refused with its path, never started
    with pytest.raises(ServerControlError, match="is not the C gearmand") as err:
        LocalGearmand(tmp_path / "data", port=1, binary=str(fake)).start()
    assert str(fake) in str(err.value) and not marker.exists()


def test_a_restarted_server_keeps_keepalive_and_the_configs_maxqueue(tmp_path):
    from gearman_frame.processes import cmdline
    from gearman_frame.wire import WireClient

    port, data = free_port(), str(tmp_path / "data")
    config = tmp_path / "config.yaml"
    config.write_text(f"servers: ['127.0.0.1:{port}']\n"
                      "functions:\n  capped: {command: ['true'], maxqueue: 2}\n")
    common = ["--config", str(config), "--data-dir", data]
    for _ in range(2):  # started, stopped, started again: the limit is back each time
        started = runadmin("server", "start", *common)
        assert started.returncode == 0, started.stderr
        try:
            assert "capped=2" in started.stdout
            pid = int((tmp_path / "data" / f"gearmand-{port}.pid").read_text())
            argv = cmdline(pid)
            assert b"--keepalive" in argv and b"--keepalive-idle=5" in argv
            client = WireClient([f"127.0.0.1:{port}"])
            outcomes = []
            for i in range(3):
                try:
                    client.submit("capped", b"x%d" % i, background=True, timeout=5)
                    outcomes.append("queued")
                except Exception as err:  # the third: gearmand's queue is full
                    outcomes.append(str(err))
            assert outcomes[:2] == ["queued", "queued"] and "full" in outcomes[2].lower()
        finally:
            assert runadmin("server", "stop", *common).returncode == 0
        (tmp_path / "data" / f"queue-{port}.sqlite").unlink()  # start empty again
