"""Waiting for one command to exit: woken at once by a pidfd, its output pipes read
meanwhile."""
from __future__ import annotations

import os
import time

from .groups import wait_pid


class Waiter:
    """Waits for one child to exit, waking at once when it does (a pidfd), reading its
    output pipes (a Pump) meanwhile."""

    def __init__(self, proc, pump):
        self.proc, self.pump = proc, pump
        self.pidfd = None
        if pump is not None:
            try:
                self.pidfd = os.pidfd_open(proc.pid)
                pump.watch(self.pidfd)
            except (AttributeError, OSError):
                self.pidfd = None

    def wait(self, timeout):
        """True if the child exited within ``timeout`` seconds (None: no limit)."""
        if self.pump is None:
            return wait_pid(self.proc, timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return self.proc.poll() is not None
            ms = -1 if left is None else int(left * 1000) + 1
            if self.pidfd is None:  # no pidfd: look every 10 ms
                ms = 10 if ms < 0 else min(ms, 10)
            ready = self.pump.wait(ms)
            if (self.pidfd is None or ready) and self.proc.poll() is not None:
                return True

    def close(self):
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
