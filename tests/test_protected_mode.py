"""Protected mode: with no key, a worker, the scheduler and the dashboard refuse to start
while a configured server is reachable from other hosts; `security.insecure: true` lets
them, with one warning. The server here is 0.0.0.0, which is not loopback (gearmand
bound to it is reachable from anywhere) yet a connect to it stays on this machine."""
import subprocess
import time

import yaml

from .client_helpers import sendjob
from .test_admin import RUNADMIN
from .worker_helpers import RUNWORKERS, send

UNPROTECTED = "0.0.0.0:1"


def config(tmp_path, servers, **sections):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"servers": servers, **sections}))
    return path


def refused(proc):
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, \
        proc.stderr
    assert "security.key_file" in lines[0] and "security.insecure" in lines[0], lines[0]
    assert "0.0.0.0:1 is not on loopback" in lines[0], lines[0]


def test_a_worker_with_a_server_off_loopback_and_no_key_refuses_to_start(tmp_path):
    path = config(tmp_path, [UNPROTECTED], functions={"echo": {"command": ["echo", "x"]}})
    started = time.monotonic()
    proc = subprocess.run([RUNWORKERS, "--config", str(path)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    refused(proc)
    assert time.monotonic() - started < 10  # at once, nothing tried


def test_the_scheduler_and_the_dashboard_refuse_too(tmp_path):
    path = config(tmp_path, [UNPROTECTED], schedules={"tick": {"every": "1m", "function": "f"}})
    refused(sendjob(path, "scheduler", timeout=60))
    refused(subprocess.run([RUNADMIN, "--config", str(path), "web", "--listen",
                            "127.0.0.1:1"], capture_output=True, text=True, timeout=60))


def test_insecure_lets_a_worker_start_with_one_warning(gearmand, tmp_path):
    port = gearmand.address.rsplit(":", 1)[1]
    path = config(tmp_path, [f"0.0.0.0:{port}"], security={"insecure": True},
                  functions={"echo": {"command": ["echo", "served"]}})
    log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen([RUNWORKERS, "--config", str(path)], stdout=log, stderr=log,
                              cwd=tmp_path)
    try:
        assert send([gearmand.address], "echo", timeout=30).stdout == "served\n"
        text = (tmp_path / "worker.log").read_text()
        assert text.count("security.insecure") == 1, text
    finally:
        worker.terminate()
        worker.wait(30)
        log.close()
