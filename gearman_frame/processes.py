"""Processes, the one way: read what /proc says of one, signal it quietly, and stop it
with escalation (a polite signal, a grace period, then SIGKILL).

The runner's process groups, the worker's keeper and the local gearmand are all stopped
through :func:`escalate`; every reader of ``/proc/PID/stat`` goes through
:func:`proc_stat`.
"""
from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Callable

#: Seconds between two looks while waiting for a process to go.
WAIT_STEP = 0.005


def _read_small(path: str) -> bytes:
    """A small /proc file's bytes in three system calls (open() would add four more)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def proc_stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, pgid, start time in clock ticks) of a process; None if it is gone."""
    try:
        fields = _read_small(f"/proc/{pid}/stat").rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[19])


def cmdline(pid: int) -> list[bytes]:
    """The argv of ``pid`` (from /proc), or [] if it is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().split(b"\0")
    except OSError:
        return []


def is_alive(pid: int) -> bool:
    """True if ``pid`` is a live process (a zombie is not)."""
    info = proc_stat(pid)
    return info is not None and info[0] != "Z"


def send_signal(pid: int, sig: int, group: bool = False) -> bool:
    """Send ``sig`` to a process (or the group it leads); False if it is gone (or not
    ours to signal) instead of an exception."""
    try:
        (os.killpg if group else os.kill)(pid, sig)
        return True
    except OSError as err:
        if err.errno in (errno.ESRCH, errno.EPERM):
            return False
        raise


def escalate(send: Callable[[int], bool], gone: Callable[[], bool], grace: float,
             first: int | None = signal.SIGTERM,
             wait: Callable[[float], object] | None = None) -> bool:
    """Stop something: ``send(first)`` (skipped if ``first`` is None), wait up to
    ``grace`` seconds until ``gone()``, then ``send(SIGKILL)`` if it is not. ``wait(left)``
    waits smartly (a child's pidfd) instead of short sleeps. Returns True if it went
    within the grace period, False if it had to be killed (or was not there to signal)."""
    if first is not None and not send(first):
        return False
    if wait_until(gone, grace, wait):
        return True
    send(signal.SIGKILL)
    return False


def wait_until(done: Callable[[], bool], timeout: float,
               wait: Callable[[float], object] | None = None) -> bool:
    """True as soon as ``done()``; False if it is not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if wait is not None:
            wait(left)
        else:
            time.sleep(min(WAIT_STEP, left))
    return True
