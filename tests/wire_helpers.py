"""Helpers for wire-level tests: an echo worker thread and raw admin commands."""
import threading

from gearman_frame.wire import WireWorker


class WorkerThread:
    """A WireWorker serving ``tasks`` ({name: callback}) in a daemon thread."""

    def __init__(self, servers, tasks, client_id="test.0"):
        self.worker = WireWorker(servers, client_id=client_id)
        for name, callback in tasks.items():
            self.worker.register_task(name, callback)
        self.thread = threading.Thread(target=self.worker.work, name=client_id, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.worker.stop()
        self.thread.join(10)
        assert not self.thread.is_alive(), "worker thread did not stop"


def echo(worker, job):
    return job.data
