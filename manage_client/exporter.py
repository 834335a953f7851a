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
from .caps_view import waiting_of

#: Seconds between two polls of a server, at the least.
DEFAULT_INTERVAL = 5.0


class QueueCollector:
    """A prometheus_client collector of every server's ``status``, cached per interval."""

    def __init__(self, servers, interval=DEFAULT_INTERVAL, caps=None):
        self.servers = list(servers)
        #: A CapsView: capped functions' slots held and jobs waiting (None: no caps).
        self.caps = caps
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
        return [jobs, workers, up, polls, *self._caps(answers, GaugeMetricFamily)]

    def _caps(self, answers, gauge):
        """The capped functions' slots (configured, held now) and jobs waiting for one."""
        if self.caps is None or not self.caps.capped:
            return []
        rows = self.caps.rows(waiting_of([r for rs in answers.values() for r in rs or ()]))
        slots = gauge("gearman_frame_cap_slots", "A capped function's concurrency "
                      "(functions.NAME.concurrency)", labels=["function"])
        held = gauge("gearman_frame_cap_slots_held", "Its slots held now, fleet-wide",
                     labels=["function"])
        waiting = gauge("gearman_frame_cap_jobs_waiting", "Its jobs queued in gearmand, "
                        "waiting for a slot or a start", labels=["function"])
        for row in rows:
            if row["concurrency"]:
                slots.add_metric([row["function"]], row["concurrency"])
            if row["held"] is not None:
                held.add_metric([row["function"]], row["held"])
            waiting.add_metric([row["function"]], row["waiting"])
        return [slots, held, waiting]


def serve(servers, host, port, interval=DEFAULT_INTERVAL, caps=None):
    """Serve ``/metrics`` on host:port until SIGTERM or SIGINT."""
    from prometheus_client import CollectorRegistry, start_http_server
    registry = CollectorRegistry()
    registry.register(QueueCollector(servers, interval, caps))
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    start_http_server(port, addr=host, registry=registry)
    print(f"exporter: http://{host}:{port}/metrics for "
          f"{', '.join(str(s) for s in servers)}", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
