"""gearmand's queue in PostgreSQL or Redis (`server.queue`, `runadmin server start
--queue URL`): a gearmand SIGKILLed with background jobs queued is replaced by a standby
started on another port with the same queue, which replays them; each runs once. (The
runbook: docs/ledger.md, "A gearmand host lost for good".)"""
import os
import signal
import subprocess
import time

import pytest

from gearman_frame.daemons.gearmand import free_port

from .client_helpers import client_config
from .helpers import wait_for
from .worker_helpers import RUNADMIN


def server(folder, port, queue, action="start"):
    return subprocess.run([RUNADMIN, "server", action, "--port", str(port), "--data-dir",
                           str(folder), "--queue", queue], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("kind", ["postgresql", "redis"])
def test_a_standby_gearmand_replays_a_killed_ones_shared_queue(kind, request, tmp_path,
                                                                start_workers):
    from send_job_client import Job, JobClient
    queue = (request.getfixturevalue("postgres_url") if kind == "postgresql"
             else request.getfixturevalue("redis_server").url)
    first, standby = free_port(), free_port()
    started = server(tmp_path / "first", first, queue)
    assert started.returncode == 0, started.stderr
    _, config = client_config(tmp_path / "sender", [f"127.0.0.1:{first}"])
    with JobClient(config) as client:
        sent = client.submit_many([Job.of("keep", n=i) for i in range(10)], background=True)
    assert all(d.handle for d in sent)
    pid = int((tmp_path / "first" / f"gearmand-{first}.pid").read_text())
    os.kill(pid, signal.SIGKILL)  # the host is lost: no shutdown, no flush
    replaced = server(tmp_path / "standby", standby, queue)
    assert replaced.returncode == 0, replaced.stderr
    try:
        record = tmp_path / "record"
        start_workers([f"127.0.0.1:{standby}"],
                      {"keep": {"shell": f"echo {{n}} >> {record}"}})
        wait_for(lambda: record.exists() and len(record.read_text().split()) >= 10, 30,
                 "the replayed jobs to run")
        time.sleep(1.0)  # a copy replayed twice would have run by now
        assert sorted(record.read_text().split(), key=int) == [str(i) for i in range(10)]
    finally:
        server(tmp_path / "standby", standby, queue, "stop")
