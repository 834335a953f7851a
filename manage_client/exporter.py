"""`runadmin exporter`: gearmand's side of the fleet for Prometheus, for every configured
server: jobs queued and running and workers per function, and whether the server
answers. gearmand's ``status`` locks its tables, so each server is asked at most once per
``--interval`` however often Prometheus scrapes; scrapes in between get the last answer."""
from __future__ import annotations

import signal
import threading
import time

from gearman_frame.errors import FrameError

from .admin import AdminClient

#: Seconds between two polls of a server, at the least.
DEFAULT_INTERVAL = 5.0


class QueueCollector:
    """A prometheus_client collector of every server's ``status``, cached per interval."""

    def __init__(self, servers, interval=DEFAULT_INTERVAL):
        self.servers = list(servers)
        self.interval = interval
        self.polls = 0
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._last: dict = {}  # server -> list of FunctionStatus, or None (down)

    def _poll(self):
        with self._lock:
            if time.monotonic() - self._at < self.interval:
                return self._last
            answers: dict[str, list | None] = {}
            for server in self.servers:
                try:
                    with AdminClient([server]) as admin:
                        answers[str(server)] = admin.status()
                except FrameError:
                    answers[str(server)] = None
            self.polls += 1
            self._at, self._last = time.monotonic(), answers
            return answers

    def collect(self):
        # prometheus_client: 7.7 MiB and 41 ms, only for `runadmin exporter`
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        answers = self._poll()
        jobs = GaugeMetricFamily("gearman_frame_queue_jobs",
                                 "Jobs gearmand holds per function: queued or running",
                                 labels=["server", "function", "state"])
        workers = GaugeMetricFamily("gearman_frame_queue_workers",
                                    "Worker connections that can take the function",
                                    labels=["server", "function"])
        up = GaugeMetricFamily("gearman_frame_server_up", "1 if the server answered",
                               labels=["server"])
        for server, rows in answers.items():
            up.add_metric([server], 0 if rows is None else 1)
            for row in rows or ():
                jobs.add_metric([server, row.function, "queued"], row.queued)
                jobs.add_metric([server, row.function, "running"], row.running)
                workers.add_metric([server, row.function], row.workers)
        polls = CounterMetricFamily("gearman_frame_exporter_polls",
                                    "Times the exporter asked the servers for status")
        polls.add_metric([], self.polls)
        return [jobs, workers, up, polls]


def serve(servers, host, port, interval=DEFAULT_INTERVAL):
    """Serve ``/metrics`` on host:port until SIGTERM or SIGINT."""
    from prometheus_client import CollectorRegistry, start_http_server
    registry = CollectorRegistry()
    registry.register(QueueCollector(servers, interval))
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    start_http_server(port, addr=host, registry=registry)
    print(f"exporter: http://{host}:{port}/metrics for "
          f"{', '.join(str(s) for s in servers)}", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
