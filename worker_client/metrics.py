"""Prometheus metrics of a worker (``runworkers --metrics HOST:PORT``), with the
prometheus_client library in its multiprocess mode: each worker process writes its
samples to memory-mapped files in one folder, and one small process forked by the
supervisor serves their sum at ``/metrics``, so a recycled or replaced process's counts
stay in the totals. Imported only when metrics are on (the library costs a worker ~3 MiB
and 150 ms of imports)."""
import os
import signal

#: prometheus_client's variable naming the folder of the processes' sample files.
MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
#: Job durations (seconds): from a no-op task to an hour-long command.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600)


class Metrics:
    """A worker process's metrics (its samples go to the shared folder), updated from
    the process's health loop (Stats.flush_metrics), not by each job."""

    def __init__(self):
        # prometheus_client: 7.7 MiB and 41 ms, only with --metrics
        from prometheus_client import Counter, Gauge, Histogram
        self.jobs = Counter("gearman_frame_jobs", "Jobs ended, by function and status",
                            ["function", "status"])
        self.duration = Histogram("gearman_frame_job_duration_seconds",
                                  "Time from taking a job to its answer", ["function"],
                                  buckets=DURATION_BUCKETS)
        self.running = Gauge("gearman_frame_jobs_running", "Jobs running now", ["function"],
                             multiprocess_mode="livesum")
        self.retries = Counter("gearman_frame_retries", "Attempts retried", ["function"])
        self.killed = Counter("gearman_frame_processes_killed",
                              "Command processes killed: timeouts, cancels, escapes")
        self.refused = Counter("gearman_frame_refused",
                               "Jobs refused: unsigned, badly signed, expired or replayed")
        self._running_shown: set = set()

    def ended(self, function, status, durations):
        """Jobs of ``function`` that ended with ``status``, taking ``durations`` (the
        job count last: a scrape that sees it sees the rest)."""
        histogram = self.duration.labels(function)
        for seconds in durations:
            histogram.observe(seconds)
        if status == "refused":
            self.refused.inc(len(durations))
        self.jobs.labels(function, status).inc(len(durations))

    def set_running(self, counts):
        """The jobs running now, per function (functions no longer running go to 0)."""
        for function in self._running_shown | set(counts):
            self.running.labels(function).set(counts.get(function, 0))
        self._running_shown |= set(counts)

    def counted(self, function, counter):
        if counter == "retried":
            self.retries.labels(function).inc()

    def processes_killed(self, count):
        self.killed.inc(count)


def prepare_folder(folder):
    """Empty the samples folder (counts of an earlier run must not add up) and name it
    for the processes about to be forked."""
    os.makedirs(folder, mode=0o700, exist_ok=True)
    for name in os.listdir(folder):
        if name.endswith(".db"):
            os.unlink(os.path.join(folder, name))
    os.environ[MULTIPROC_VARIABLE] = folder


#: Worker processes that died and were replaced (the supervisor counts them: a crash
#: loop shows as a rate).
_DEATHS: list = []


def count_deaths():
    """In the supervisor, before its first process: the deaths counter, at 0 (so that a
    rate sees the first death too)."""
    from prometheus_client import Counter
    if not _DEATHS:
        _DEATHS.append(Counter("gearman_frame_worker_process_deaths",
                               "Worker processes that died and were replaced"))


def process_gone(pid, died=False):
    """Drop an ended worker process's live gauges (its counters stay in the sums); count
    it if it died."""
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(pid)
    if died:
        count_deaths()
        _DEATHS[0].inc()


def serve(host, port):
    """The metrics process: serve the sum of every worker process's samples until
    SIGTERM."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    start_http_server(port, addr=host, registry=registry)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    return 0
