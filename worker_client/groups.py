"""Process groups: kill one with escalation, tell whether one still has members, wait
for a child (a pidfd wakes the waiter the moment it exits).

A command runs in a process group of its own; when it ends, times out or its worker
stops, the group is what is killed (honcho's ``killpg``; supervisor's ``killasgroup``).
"""
from __future__ import annotations

import ctypes
import os
import select
import signal
import threading
import time

from gearman_frame.processes import escalate, is_alive, send_signal, wait_until

from .procfs import group_members

#: Seconds between SIGTERM and SIGKILL when a group is killed.
KILL_GRACE = 0.1


def kill_with_group(pid: int) -> None:
    """SIGKILL the group ``pid`` leads, or else the process alone."""
    if not send_signal(pid, signal.SIGKILL, group=True):
        send_signal(pid, signal.SIGKILL)


def wait_gone(pids, timeout=0.2):
    """Wait (briefly) until the killed ``pids`` are dead, so what they orphaned has been
    re-parented to us before the next look."""
    wait_until(lambda: not any(is_alive(pid) for pid in pids), timeout)


def kill_group(pgid: int, grace: float = KILL_GRACE, leader=None) -> bool:
    """SIGTERM the process group, then SIGKILL after ``grace``; ignore a gone group.

    ``leader`` (a Child or Popen) is waited on between the two signals, so a command that
    dies on SIGTERM is not signalled again. Returns True if the group existed.
    """
    if not send_signal(pgid, signal.SIGTERM, group=True):
        return False

    def wait(left):
        if leader is not None and leader.poll() is None:
            wait_pid(leader, left)
        else:
            time.sleep(min(0.005, left))
    escalate(lambda sig: send_signal(pgid, sig, group=True),
             lambda: not (group_alive(pgid) and group_members(pgid)), grace, first=None,
             wait=wait)
    send_signal(pgid, signal.SIGKILL, group=True)  # also what forked since the last look
    return True


def group_alive(pgid: int) -> bool:
    """True if any process (a zombie too) is in the group: one cheap system call, made
    through libc so that the usual answer (no such group) costs no exception."""
    if _kill is None:
        return send_signal(pgid, 0, group=True)
    return _kill(-pgid, 0) == 0


def _libc_kill():
    try:
        kill = ctypes.PyDLL(None).kill  # keeps the GIL: it never blocks
        kill.argtypes = [ctypes.c_int, ctypes.c_int]
        return kill
    except (OSError, AttributeError):
        return None


_kill = _libc_kill()


class Child:
    """A started child process: ``pid``, ``poll()``, ``wait()`` and ``returncode`` (negative
    for a signal), as subprocess.Popen has them."""

    def __init__(self, pid):
        self.pid = pid
        self.returncode = None
        self._lock = threading.Lock()  # one reaper at a time (a killer thread may poll too)

    def poll(self):
        with self._lock:
            if self.returncode is None:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode

    def wait(self):
        while self.poll() is None:
            wait_pid(self, 1.0)
        return self.returncode


def wait_pid(proc, timeout):
    """Wait up to ``timeout`` for ``proc`` to exit, waking at once when it does (pidfd)."""
    if timeout is None:
        proc.wait()
        return True
    if timeout <= 0:
        return proc.poll() is not None
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # no pidfd: poll with short sleeps
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        return proc.poll() is not None
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.poll(max(0, int(timeout * 1000) + 1))
    finally:
        os.close(pidfd)
    return proc.poll() is not None


