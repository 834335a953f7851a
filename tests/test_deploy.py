"""Deployment: the systemd units in deploy/systemd verify, and `runworkers` speaks systemd's
notify protocol (READY once every process serves, STOPPING while it drains) to a socket
the test creates."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from .helpers import wait_for
from .test_supervisor import serving

UNITS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                     "deploy", "systemd")
VENV = os.path.dirname(os.path.dirname(sys.executable))


def _verify(folder, *units):
    return subprocess.run(["systemd-analyze", "verify", *units], cwd=folder,
                          capture_output=True, text=True, timeout=60)


def test_the_units_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is not installed (apt-get install systemd)")
        pytest.skip("systemd-analyze is not installed")
    names = {"gearman-frame-gearmand.service": "gearman-frame-gearmand.service",
             "gearman-frame-worker@.service": "gearman-frame-worker@web1.service"}
    for source, target in names.items():
        text = open(os.path.join(UNITS, source)).read()
        assert "/opt/gearman-frame/.venv" in text  # the path the README says to install to
        (tmp_path / target).write_text(text.replace("/opt/gearman-frame/.venv", VENV))
    checked = _verify(tmp_path, *names.values())
    assert checked.returncode == 0, checked.stderr
    worker = (tmp_path / "gearman-frame-worker@web1.service").read_text()
    assert "Type=notify" in worker and "KillMode=mixed" in worker
    assert "ExecReload=/bin/kill -HUP $MAINPID" in worker
    # the verifier does fail a broken unit
    (tmp_path / "broken.service").write_text(worker.replace("Type=notify", "Type=bogus")
                                             .replace(VENV, "/nonexistent"))
    assert _verify(tmp_path, "broken.service").returncode != 0


@pytest.fixture
def notified(gearmand, start_workers, tmp_path, monkeypatch):
    """``start(name)``: a `runworkers` of two processes, with $NOTIFY_SOCKET naming a
    socket the test reads, as systemd's would be: returns (worker, the socket)."""
    path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(path)
    listener.settimeout(20)
    monkeypatch.setenv("NOTIFY_SOCKET", path)

    def start(name):
        worker = start_workers([gearmand.address], {"echo": {"command": ["echo", "{w}"]}},
                               name=name, threads=1, ready=False,
                               extra_args=["--processes", "2"])
        return worker, listener
    yield start
    listener.close()


def test_runworkers_notifies_ready_when_every_process_serves_and_stopping(gearmand,
                                                                          notified):
    worker, listener = notified("unit")
    ready = listener.recv(4096).decode()
    assert "READY=1" in ready.splitlines() and f"MAINPID={worker.proc.pid}" in ready
    assert len(serving(gearmand, "unit")) == 2  # both processes serve when READY comes
    worker.proc.send_signal(signal.SIGTERM)
    assert "STOPPING=1" in listener.recv(4096).decode().splitlines()
    assert worker.proc.wait(10) == 0


def test_ready_comes_when_the_processes_report_at_the_same_moment(gearmand, notified):
    """Two processes that report "serving" while the supervisor is not looking (stopped
    here) are both heard: their notices queue and are not merged into one."""
    worker, listener = notified("pair")
    wait_for(lambda: len(worker.worker_pids()) == 2, 10, "two processes forked")
    worker.proc.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: worker.log().count(" ready: ") == 2
                 and len(serving(gearmand, "pair")) == 2, 15, "both processes serving")
        time.sleep(1.0)  # past their last step before they report
    finally:
        worker.proc.send_signal(signal.SIGCONT)
    assert "READY=1" in listener.recv(4096).decode().splitlines()
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(10) == 0
