"""What /proc says about processes: the facts the runner, the reaper and the ledger need.

Each read is a few system calls (os.open/os.read, not open(): the job loop runs these
for every command).
"""
import os
import threading
import time


def _read_small(path):
    """A small /proc file's bytes in three system calls (open() would add four more)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def proc_stat(pid):
    """(state, ppid, pgid, start time) of a process, from /proc; None if it is gone."""
    try:
        fields = _read_small(f"/proc/{pid}/stat").rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[19])


_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def boot_ticks():
    """Now, in clock ticks since boot: the unit of a process's start time in /proc/PID/stat
    (a child started after this call has a start time at or after it)."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME) * _TICKS_PER_SECOND // 1_000_000_000


def all_pids():
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def group_members(pgid):
    """Pids of live (non-zombie) processes in process group ``pgid``."""
    return [pid for pid in all_pids()
            if (info := proc_stat(pid)) and info[2] == pgid and info[0] != "Z"]


#: Beyond this many pids created since a command started, look through /proc instead.
_PID_RANGE_LIMIT = 512


_loadavg = threading.local()


def _last_pid():
    """The pid the kernel allocated last (the last field of /proc/loadavg, read through a
    descriptor each thread keeps open: one system call)."""
    fd = getattr(_loadavg, "fd", None)
    if fd is None:
        fd = _loadavg.fd = os.open("/proc/loadavg", os.O_RDONLY)
    return int(os.pread(fd, 128, 0).split()[-1])


def children_since(first_pid, skip=frozenset(), reaped=frozenset()):
    """Live children of this process created after ``first_pid``, leaving out the pids
    in ``skip``: only the pids allocated since then are looked at (usually none or a
    few), not the whole of /proc. Pids in ``reaped`` (children already reaped) are left
    out too when they lie in that range: allocated after ``first_pid`` and reaped, such a
    pid can only be in use again after the pid counter wrapped all the way round."""
    last = _last_pid()
    if first_pid < last <= first_pid + _PID_RANGE_LIMIT:
        candidates = range(first_pid + 1, last + 1)
    elif last == first_pid:
        return []
    else:  # many processes since, or the pid counter wrapped
        candidates, reaped = all_pids(), frozenset()
    me = os.getpid()
    return [pid for pid in candidates
            if pid not in skip and pid not in reaped and (info := proc_stat(pid))
            and info[1] == me and info[0] != "Z"]


def environ_has(pid, entry):
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return entry in handle.read().split(b"\0")
    except OSError:
        return False
