"""Process hygiene for a worker: nothing a command started may outlive it unnoticed.

* The worker becomes a child subreaper, so the grandchildren of killed commands are
  re-parented to it (not to init) and reaped here.
* The process groups of running commands are recorded in a memory-mapped file in a
  state folder (a line each).
  A keeper (a tiny bash started in its own session, reading a pipe from the worker)
  kills those groups the moment the worker dies, even by SIGKILL; a worker that starts
  after a predecessor of the same name also sweeps whatever that one left.
"""
import ctypes
import logging
import mmap
import os
import signal
import threading

from gearman_frame.errors import UsageError
from gearman_frame.files import FileLock, private_folder
from gearman_frame.processes import escalate, send_signal

from .procfs import adopted_children, all_pids, environ_of, last_pid, proc_stat
from .groups import kill_with_group
from .veryeasyprocess import TAG_VARIABLE

log = logging.getLogger(__name__)

#: Clock ticks between the moment a group is recorded as starting and the kernel's start
#: time of its leader (the spawn happens in between).
START_SLACK_TICKS = 2

PR_SET_CHILD_SUBREAPER = 36
#: Seconds between two passes of the orphan reaper.
REAP_INTERVAL = 1.0


def become_subreaper():
    """Make this process the reaper of its orphaned descendants (Linux); True if it worked."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


M_ARENA_MAX = -8  # mallopt(3)


M_MMAP_THRESHOLD = -3
#: Allocations at least this large get their own mapping, returned to the system when
#: freed. glibc raises its threshold after each large free (up to 32 MiB), so without a
#: fixed one the buffers of one big job stayed in the heap: 60 MiB held after a 12 MB job.
MMAP_THRESHOLD = 256 * 1024


def limit_malloc_arenas(arenas=1):
    """Let glibc's malloc keep ``arenas`` arenas instead of one per thread (each worker
    thread touching its own arena costs about 1 MiB of resident memory, and under the GIL
    the threads gain nothing from separate arenas), and fix its mmap threshold (see
    MMAP_THRESHOLD). Call before the threads start (the worker process only: it changes
    the whole process). True if it worked."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
        return (mallopt(M_ARENA_MAX, arenas) == 1
                and mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1)
    except (OSError, AttributeError):
        return False


def reap_orphans(runner):
    """Reap zombie children that no running command owns (re-parented grandchildren).

    They are among the main thread's children (``procfs.adopted_children``: one read);
    only where the kernel keeps no such list is /proc looked through. The pass is skipped
    while a command is being started (it may exit before it is registered) and holds the
    runner's lock, so none starts during it. A live child is left alone (WNOHANG).
    """
    with runner.lock:
        if runner.spawning:  # a child may be between fork and registration: next pass
            return
        owned = runner.running_pids()
        children = adopted_children()
        if children is None:
            me = os.getpid()
            children = [pid for pid in all_pids()
                        if (info := proc_stat(pid)) and info[1] == me and info[0] == "Z"]
        for pid in children:
            if pid not in owned:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass


def escaped_descendants(commands):
    """The live descendants of running commands (``{pid: start ticks}``) that left their
    command's process group, as ``{pid: start ticks}``: read from /proc, so they are found
    whatever their environment (``setsid env -i ...`` carries no run tag)."""
    first, last = min(commands), last_pid()
    # a descendant's pid is above its command's (unless the pid counter wrapped)
    candidates = range(first, last + 1) if first <= last <= first + 4096 else all_pids()
    stats = {pid: info for pid in candidates
             if (info := proc_stat(pid)) is not None and info[0] != "Z"}
    children: dict[int, list[int]] = {}
    for pid, info in stats.items():
        children.setdefault(info[1], []).append(pid)
    escaped = {}
    for root in commands:
        todo = list(children.get(root, ()))
        while todo:
            pid = todo.pop()
            if stats[pid][2] != root:  # its group is not the command's
                escaped[pid] = stats[pid][3]
            todo.extend(children.get(pid, ()))
    return escaped


class OrphanReaper(threading.Thread):
    """Background thread that, every REAP_INTERVAL seconds until stopped, reaps orphans
    and (given a ledger) records in it the processes that left a running command's group,
    so the keeper kills them too if the worker dies (an escape that also cleared its
    environment carries no tag for the keeper to find)."""

    def __init__(self, runner, interval=REAP_INTERVAL, ledger=None):
        super().__init__(name="orphan-reaper", daemon=True)
        self.runner = runner
        self.interval = interval
        self.ledger = ledger
        self.stopped = threading.Event()
        self._recorded = set()

    def run(self):
        while not self.stopped.wait(self.interval):
            try:
                reap_orphans(self.runner)
                if self.ledger is not None:
                    self._record_escapes()
            except Exception:  # never let housekeeping end the worker
                log.exception("orphan reaper pass failed")

    def _record_escapes(self):
        commands = self.runner.running_starts()
        escaped = escaped_descendants(commands) if commands else {}
        for pid in self._recorded - escaped.keys():
            self.ledger.remove(pid)
        for pid in escaped.keys() - self._recorded:
            self.ledger.add(pid, escaped[pid], escaped=True)
        self._recorded = set(escaped)


def kill_tagged(prefix):
    """SIGKILL (with its group) every process whose environment has an entry starting
    with ``prefix`` (a dead worker's run tags); return their pids."""
    entry = prefix.encode()
    found = [pid for pid in all_pids() if pid != os.getpid()
             and any(v.startswith(entry) for v in environ_of(pid) or ())]
    for pid in found:
        kill_with_group(pid)
    return found


#: The mark of a ledger line that records an escaped process rather than a group.
ESCAPED = "e"


class GroupLedger:
    """The process groups of running commands, in a folder: ``groups`` holds fixed-width
    lines (``PGID START PGID``, or blank for a free slot; START is the leader's start time
    in clock ticks, so a reused pid is never taken for the group) and ``owner`` names the
    worker process. The file is memory-mapped: recording a group is a store to shared
    memory (no system call, no GIL handoff in the job loop), and the kernel keeps the
    pages through a SIGKILL of the worker. A store cut short by the SIGKILL leaves a line
    whose two PGIDs differ, and readers skip it."""

    SLOT = 32
    BLANK = b" " * (SLOT - 1) + b"\n"
    FIRST_SLOTS = 256

    def __init__(self, path):
        self.path = path
        private_folder(path)
        self.lock = FileLock(os.path.join(path, "lock"))
        self._map: mmap.mmap | None = None
        self._slots: dict[int, int] = {}  # pgid -> slot offset
        self._free: list[int] = []
        self._lock = threading.Lock()
        self.previous_tags = None

    @property
    def groups_file(self):
        return os.path.join(self.path, "groups")

    def _owner_file(self):
        return os.path.join(self.path, "owner")

    def acquire(self, tag_prefix=""):
        """Make this process the folder's only owner (an flock held for its life, dropped
        by the kernel however it ends). Raises UsageError naming the running owner when
        another live process holds the folder: two workers of one name on one host would
        otherwise record, sweep and kill each other's commands."""
        if not self.lock.acquire():
            raise UsageError(f"a worker named {os.path.basename(self.path)[7:]!r} already "
                             f"runs here ({self._owner()}, state {self.path}); give each "
                             "runworkers on a host its own --name (e.g. --name "
                             "'{hostname}-2')")
        self.previous_tags = self._owner_field(1)
        with open(self._owner_file(), "w") as handle:
            handle.write(f"{os.getpid()} {tag_prefix}\n")

    def _owner(self):
        pid = self._owner_field(0)
        return "pid unknown" if pid is None else f"pid {pid}"

    def _owner_field(self, index):
        """A field of the owner file (0: its pid, 1: its run tag prefix), or None."""
        try:
            with open(self._owner_file()) as handle:
                return handle.read().split()[index]
        except (OSError, IndexError):
            return None

    def claim(self):
        """Start an empty ledger (the folder is ours: see ``acquire``)."""
        with self._lock:
            if self._map is None:
                self._grow(self.FIRST_SLOTS)

    def _grow(self, slots) -> mmap.mmap:
        """Map the groups file with room for ``slots`` (the lock is held) and return the
        map. A replaced mapping is left open: it maps the same pages, so a store through it
        still lands."""
        old = len(self._map) if self._map is not None else 0
        fd = os.open(self.groups_file, os.O_RDWR | os.O_CREAT | (0 if old else os.O_TRUNC),
                     0o600)
        try:
            os.pwrite(fd, self.BLANK * (slots - old // self.SLOT), old)
            self._map = new_map = mmap.mmap(fd, slots * self.SLOT)
        finally:
            os.close(fd)
        self._free.extend(range(old, slots * self.SLOT, self.SLOT))
        self._free.reverse()  # hand out the first slots first
        return new_map

    def add(self, pgid, start_ticks, escaped=False):
        """Record a running group; ``start_ticks`` is the clock tick (since boot) just
        before it was started (see ``procfs.boot_ticks``). ``escaped``: a process that
        left a command's group, with its exact start time (killed with the group it may
        lead, only while that start time is still its own)."""
        mark = f" {ESCAPED}" if escaped else ""
        line = f"{pgid} {start_ticks} {pgid}{mark}".encode().ljust(self.SLOT - 1) + b"\n"
        with self._lock:
            groups = self._map
            if groups is None:
                groups = self._grow(self.FIRST_SLOTS)
            elif not self._free:
                groups = self._grow(2 * len(groups) // self.SLOT)
            offset = self._free.pop()
            self._slots[pgid] = offset
            groups[offset:offset + self.SLOT] = line

    def remove(self, pgid):
        with self._lock:
            offset = self._slots.pop(pgid, None)
            if offset is not None and self._map is not None:
                self._map[offset:offset + self.SLOT] = self.BLANK
                self._free.append(offset)

    def _recorded(self):
        try:
            with open(self.groups_file, "rb") as handle:
                lines = handle.read().splitlines()
        except FileNotFoundError:
            return []
        recorded = []
        for line in lines:
            fields = line.split()
            if (len(fields) in (3, 4) and fields[0] == fields[2]
                    and all(f.isdigit() for f in fields[:3])):
                recorded.append((int(fields[0]), int(fields[1]),
                                 fields[3:] == [ESCAPED.encode()]))
        return recorded

    def sweep_previous(self):
        """Kill the groups a dead predecessor recorded; return the pgids killed. Call
        after ``acquire``: the lock proves the previous owner is gone."""
        killed = []
        for pgid, start, escaped in self._recorded():
            leader = proc_stat(pgid)
            if escaped:  # that very process, or nothing
                if leader is not None and leader[3] == start:
                    kill_with_group(pgid)
                    killed.append(pgid)
            # the group, not a reused pid: its leader (if alive) started when recorded
            elif leader is None or 0 <= leader[3] - start <= START_SLACK_TICKS:
                try:
                    os.killpg(pgid, signal.SIGKILL)
                    killed.append(pgid)
                except OSError:
                    pass
        if self.previous_tags and self.previous_tags.startswith(f"{TAG_VARIABLE}="):
            killed += kill_tagged(self.previous_tags)
        if killed:
            log.warning("killed %d command group(s) and process(es) left by a killed worker: "
                        "%s", len(killed), killed)
        self.claim()
        return killed


#: The keeper: waits for EOF on stdin (the worker is gone), then kills every group that
#: the worker's state folder still lists and every process that still carries one of the
#: worker's run tags (one that left its group with setsid), with its group.
KEEPER_SCRIPT = """read _ignored
tags=$2
cd "$1" || exit 0
[ -f groups ] && while read -r pgid start check kind; do
  [ -n "$pgid" ] && [ "$pgid" = "$check" ] || continue
  if [ "$kind" = e ]; then
    read -r stat < "/proc/$pgid/stat" 2>/dev/null || continue
    set -- ${stat##*) }
    [ "${20}" = "$start" ] || continue
    kill -KILL -- "-$pgid" 2>/dev/null || kill -KILL "$pgid" 2>/dev/null
  else
    kill -KILL -- "-$pgid" 2>/dev/null
  fi
done < groups
for pid in $(grep -lzs "^$tags" /proc/[0-9]*/environ | cut -d/ -f3); do
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
done
exit 0
"""


class Keeper:
    """Kills the worker's command groups when the worker dies, however it dies (bash: its
    kill takes a process group; dash's does not)."""

    def __init__(self, ledger_path, tag_prefix):
        read_end, write_end = os.pipe()
        self._write_end: int | None = write_end  # both close on exec: commands never hold them
        try:
            self.pid = os.posix_spawnp("bash", ["bash", "-c", KEEPER_SCRIPT,
                                                "gearman-frame-keeper", ledger_path,
                                                tag_prefix],
                                       os.environ, setsid=True,
                                       file_actions=[(os.POSIX_SPAWN_DUP2, read_end, 0)])
        finally:
            os.close(read_end)

    def release(self, timeout=5.0):
        """A clean stop: let the keeper go (its sweep finds nothing left to kill)."""
        if self._write_end is not None:
            os.close(self._write_end)
            self._write_end = None
            if not escalate(lambda sig: send_signal(self.pid, sig), self._reaped, timeout,
                            first=None):
                self._reaped(block=True)

    def _reaped(self, block=False):
        """True once the keeper has exited (reaped here, or by the orphan reaper)."""
        try:
            return os.waitpid(self.pid, 0 if block else os.WNOHANG)[0] != 0
        except ChildProcessError:  # the orphan reaper got to it first
            return True
