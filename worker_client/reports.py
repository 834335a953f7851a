"""Progress a running job reports to its sender (WORK_STATUS): a task's own
``progress(done, total)``, a command's seconds elapsed of its timeout."""
from __future__ import annotations

import time


class TaskProgress:
    """A task's ``progress(done, total)``: WORK_STATUS, at most one per PACE seconds but
    the last (done == total) always."""

    PACE = 0.1

    def __init__(self, wire_worker, job, note=None):
        self.wire_worker, self.job, self.note = wire_worker, job, note
        self.sent_at = float("-inf")

    def __call__(self, done, total):
        now = time.monotonic()
        if now - self.sent_at >= self.PACE or done >= total:
            self.sent_at = now
            if self.note is not None:  # `runadmin inspect` shows it
                self.note(done, total)
            self.wire_worker.report_progress(self.job, done, total)


class Progress:
    """Sends WORK_STATUS (seconds elapsed of the timeout) while a long command runs."""

    def __init__(self, wire_worker, job, timeout):
        self.wire_worker = wire_worker
        self.job = job
        self.timeout = int(timeout or 0)
        self.lost = False

    def __call__(self, elapsed):
        if not self.lost:  # once its server is gone, the rest would fail the same way
            self.lost = not self.wire_worker.report_progress(self.job, int(elapsed),
                                                             self.timeout)
