"""Prometheus metrics: a worker's `--metrics` (the sum of its processes) and
`runadmin exporter` (gearmand's queues), read with prometheus_client's own text parser
(real gearmand, the installed CLIs)."""
import json
import os
import subprocess
import sys
import threading
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from gearman_frame.daemons.gearmand import free_port

from .helpers import wait_for
from .worker_helpers import send, send_background

BIN = os.path.dirname(sys.executable)


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            samples[key] = samples.get(key, 0) + sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0)


def test_worker_metrics_count_every_job_of_every_process(gearmand, start_workers):
    port = free_port()
    functions = {"judge": {"shell": "exit {code}", "retries": 1, "retry_delay": 0.01},
                 "nap": {"command": ["sleep", "2"]}}
    worker = start_workers([gearmand.address], functions, name="measured", threads=1,
                           extra_args=["--processes", "2", "--metrics", f"127.0.0.1:{port}"])
    codes = [0] * 7 + [3] * 2
    results = [send([gearmand.address], "judge", code=c) for c in codes]
    assert [r.ok for r in results].count(True) == 7
    def counted():  # each process hands its counts over every 0.2 s
        samples = scrape(port)
        done = [value(samples, "gearman_frame_jobs_total", function="judge", status=status)
                for status in ("ok", "failed")]
        return samples if done == [7, 2] else None
    samples = wait_for(counted, 10, "7 ok and 2 failed jobs in the metrics")
    assert value(samples, "gearman_frame_retries_total", function="judge") == 2
    assert value(samples, "gearman_frame_job_duration_seconds_count", function="judge") == 9
    assert value(samples, "gearman_frame_jobs_running", function="judge") == 0
    assert value(samples, "gearman_frame_refused_total") == 0
    assert ("gearman_frame_processes_killed_total", ()) in samples
    # jobs running now are counted as running, and no longer once they ended; two naps
    # at once run one in each process (a thread each), so the gauge of 2 is a sum over
    # both processes, not one of them
    wait_for(lambda: worker.log().count(" ready: ") == 2, 10, "both processes serving")
    naps = []
    senders = [threading.Thread(target=lambda: naps.append(send([gearmand.address], "nap")))
               for _ in range(2)]
    for sender in senders:
        sender.start()
    wait_for(lambda: value(scrape(port), "gearman_frame_jobs_running", function="nap") == 2,
             5, "the running gauge at 2")
    for sender in senders:
        sender.join(10)
    assert len({r.worker for r in naps}) == 2 and all(r.ok for r in naps)
    wait_for(lambda: value(scrape(port), "gearman_frame_jobs_running", function="nap") == 0,
             5, "the running gauge back to 0")
    wait_for(lambda: value(scrape(port), "gearman_frame_jobs_total", function="nap",
                           status="ok") == 2, 5, "two naps counted")
    assert worker.proc.poll() is None


def test_exporter_gauges_match_runadmin_status(gearmand, tmp_path):
    for i in range(50):
        send_background([gearmand.address], "backlog", n=i)
    port = free_port()
    exporter = subprocess.Popen([os.path.join(BIN, "runadmin"), "--servers", gearmand.address,
                                 "exporter", "--listen", f"127.0.0.1:{port}",
                                 "--interval", "30"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        assert "exporter: http://" in exporter.stdout.readline()
        status = json.loads(subprocess.run(
            [os.path.join(BIN, "runadmin"), "--servers", gearmand.address, "status",
             "--json"], capture_output=True, text=True, timeout=30).stdout)
        row = [r for r in status if r["function"] == "backlog"][0]
        samples = scrape(port)
        server = gearmand.address
        assert value(samples, "gearman_frame_queue_jobs", server=server, function="backlog",
                     state="queued") == row["queued"] == 50
        assert value(samples, "gearman_frame_queue_jobs", server=server, function="backlog",
                     state="running") == row["running"] == 0
        assert value(samples, "gearman_frame_queue_workers", server=server,
                     function="backlog") == row["workers"] == 0
        assert value(samples, "gearman_frame_server_up", server=server) == 1
        for _ in range(5):  # scrapes within the interval do not ask gearmand again
            scrape(port)
        assert value(scrape(port), "gearman_frame_exporter_polls_total") == 1
    finally:
        exporter.terminate()
        assert exporter.wait(10) == 0
