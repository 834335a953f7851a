"""What a worker process is doing and has done, for `runadmin inspect`: the jobs running
now (function, job id, command pid, attempt, start, timeout), per-function counters since
the process started and recent durations (their percentiles). Plain dicts under one lock:
a job costs two short critical sections."""
import os
import threading
import time
from collections import deque

#: Durations kept per function for the percentiles (the most recent ones).
DURATIONS_KEPT = 1000
#: The counters `inspect` shows for every function, in this order.
COUNTERS = ("ok", "failed", "timeout", "error", "refused", "cancelled", "retried",
            "dead_lettered", "requeued")


def _percentile(ordered, fraction):
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Stats:
    """Live state of one worker process."""

    def __init__(self, metrics=None):
        #: worker_client.metrics.Metrics when Prometheus metrics are on; what a job does
        #: to them waits in ``_events`` (an append) until the health loop flushes it, so
        #: a job pays nothing for metrics (prometheus_client's multiprocess values cost
        #: ~15 us a job when updated in line)
        self.metrics = metrics
        self._events: list = []
        self._lock = threading.Lock()
        self._running = {}  # thread id -> dict
        self._counters = {}  # function -> {counter: n}
        self._durations = {}  # function -> deque of seconds

    # -- jobs (called from the job's own thread)
    def begin(self, function, job_id, timeout):
        with self._lock:
            self._running[threading.get_ident()] = {
                "function": function, "job_id": job_id, "pid": None, "attempt": 1,
                "started": time.time(), "_mono": time.monotonic(), "timeout": timeout}

    def attempt(self, number):
        entry = self._running.get(threading.get_ident())
        if entry is not None:
            entry["attempt"] = number

    def progress(self, done, total):
        """The running job's last progress (a task's, or read from a command's output)."""
        entry = self._running.get(threading.get_ident())
        if entry is not None:
            entry["progress"] = [done, total]

    def command_started(self, pid):
        entry = self._running.get(threading.get_ident())
        if entry is not None:
            entry["pid"] = pid

    def end(self, function, status, seconds):
        if self.metrics is not None:
            self._events.append((function, status, seconds))
        with self._lock:
            self._running.pop(threading.get_ident(), None)
            self._count(function, status)
            kept = self._durations.get(function)
            if kept is None:
                kept = self._durations[function] = deque(maxlen=DURATIONS_KEPT)
            kept.append(seconds)

    def running_in(self, thread_ident):
        """The job the thread ``thread_ident`` runs now (a copy), or None."""
        with self._lock:
            entry = self._running.get(thread_ident)
            return dict(entry) if entry is not None else None

    def forget(self):
        """The job in this thread ended without an outcome (left for gearmand)."""
        with self._lock:
            self._running.pop(threading.get_ident(), None)

    def count(self, function, counter):
        if self.metrics is not None:
            self._events.append((function, counter, None))
        with self._lock:
            self._count(function, counter)

    def processes_killed(self, count):
        """Command processes killed (a timeout, a cancel, escapes): for the metrics."""
        if self.metrics is not None and count:
            self._events.append((None, "killed", count))

    def flush_metrics(self):
        """Hand what happened since the last flush to the metrics, and set the running
        gauges (called by the process's health loop, and once more as it stops)."""
        if self.metrics is None:
            return
        events, self._events = self._events, []
        ended: dict = {}  # (function, status) -> durations
        for function, what, amount in events:
            if function is None:
                self.metrics.processes_killed(amount)
            elif amount is None:
                self.metrics.counted(function, what)
            else:
                ended.setdefault((function, what), []).append(amount)
        for (function, status), durations in ended.items():
            self.metrics.ended(function, status, durations)
        with self._lock:
            functions = [entry["function"] for entry in self._running.values()]
        self.metrics.set_running({f: functions.count(f) for f in set(functions)})

    def _count(self, function, counter):
        counts = self._counters.get(function)
        if counts is None:
            counts = self._counters[function] = dict.fromkeys(COUNTERS, 0)
        counts[counter] = counts.get(counter, 0) + 1

    # -- the view
    def running(self):
        now = time.monotonic()
        with self._lock:
            entries = [dict(e) for e in self._running.values()]
        for entry in entries:
            entry["elapsed_s"] = round(now - entry.pop("_mono"), 3)
        return sorted(entries, key=lambda e: e["started"])

    def snapshot(self):
        """Counters and duration percentiles (seconds) per function."""
        with self._lock:
            counters = {f: dict(c) for f, c in self._counters.items()}
            durations = {f: sorted(d) for f, d in self._durations.items()}
        return counters, {f: {"count": len(d), "p50": _percentile(d, 0.5),
                              "p90": _percentile(d, 0.9), "p99": _percentile(d, 0.99)}
                          for f, d in durations.items() if d}


def resident_mib():
    """This process's resident set size, in MiB."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
