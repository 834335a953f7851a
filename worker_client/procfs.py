"""What /proc says about processes: the facts the runner, the reaper and the ledger need.

Each read is a few system calls (os.open/os.read, not open(): the job loop runs these
for every command).
"""
import os
import threading
import time

from gearman_frame.processes import proc_stat


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


def last_pid():
    """The pid the kernel allocated last (the last field of /proc/loadavg, read through a
    descriptor each thread keeps open: one system call)."""
    fd = getattr(_loadavg, "fd", None)
    if fd is None:
        fd = _loadavg.fd = os.open("/proc/loadavg", os.O_RDONLY)
    return int(os.pread(fd, 128, 0).split()[-1])


_adopted: dict[int, int] = {}  # this process's pid -> kept descriptor of its main thread's children file
_adopted_lock = threading.Lock()
_CHILDREN_READ = 65536


def adopted_children():
    """Pids of the children of this process's main thread (zombies too), or None where
    the kernel has no children file (CONFIG_PROC_CHILDREN).

    A subreaper's orphans are re-parented to its main thread, while a command started by
    a worker thread is a child of that thread: so this short list, read in one system
    call through a kept descriptor, holds every process that outlived the command that
    started it."""
    me = os.getpid()
    fd = _adopted.get(me)
    if fd is None:
        with _adopted_lock:
            fd = _adopted.get(me)
            if fd is None:
                try:
                    fd = os.open(f"/proc/{me}/task/{me}/children", os.O_RDONLY)
                except OSError:
                    fd = -1
                _adopted[me] = fd
    if fd < 0:
        return None
    data = os.pread(fd, _CHILDREN_READ, 0)
    while len(data) % _CHILDREN_READ == 0 and data:
        more = os.pread(fd, _CHILDREN_READ, len(data))
        if not more:
            break
        data += more
    return [int(pid) for pid in data.split()]


def children_since(first_pid, skip=frozenset(), reaped=frozenset(), others=frozenset()):
    """Children of this process created after ``first_pid`` (a command's pid) that may
    have left its group, leaving out the pids in ``skip`` and ``reaped`` (running and
    reaped commands) and ``others`` (children that are no command's).

    Where the kernel lists a thread's children, only the main thread's (the adopted
    orphans, usually none) are looked at. Elsewhere, only the pids allocated since
    ``first_pid`` are read from /proc (usually none or a few), or the whole of /proc
    after many processes: a pid allocated after ``first_pid`` and reaped can only be in
    use again after the pid counter wrapped all the way round."""
    adopted = adopted_children()
    if adopted is not None:
        candidates = [pid for pid in adopted
                      if pid not in skip and pid not in reaped and pid not in others]
        if candidates and last_pid() >= first_pid:  # else the pid counter wrapped
            candidates = [pid for pid in candidates if pid > first_pid]
        return candidates
    last = last_pid()
    if first_pid < last <= first_pid + _PID_RANGE_LIMIT:
        candidates = list(range(first_pid + 1, last + 1))
    elif last == first_pid:
        return []
    else:  # many processes since, or the pid counter wrapped
        candidates, reaped = all_pids(), frozenset()
    me = os.getpid()
    return [pid for pid in candidates
            if pid not in skip and pid not in reaped and pid not in others
            and (info := proc_stat(pid))
            and info[1] == me and info[0] != "Z"]


def environ_of(pid):
    """A process's environment entries (bytes ``NAME=VALUE``), or None if it is gone."""
    try:
        return _read_all(f"/proc/{pid}/environ").split(b"\0")
    except OSError:
        return None


def _read_all(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
