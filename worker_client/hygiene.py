"""Process hygiene for a worker: nothing a command started may outlive it unnoticed.

* The worker becomes a child subreaper, so the grandchildren of killed commands are
  re-parented to it (not to init) and reaped here.
* The process groups of running commands are recorded in a small state file; a worker
  that starts after a SIGKILLed predecessor of the same name kills the groups it left.
"""
import ctypes
import json
import logging
import os
import signal
import threading

log = logging.getLogger(__name__)

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


def _stat(pid):
    """(state, ppid, pgid, starttime) of a pid, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[19])


def children_of(pid):
    """{child pid: state} for every process whose parent is ``pid``."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = _stat(int(entry))
            if info and info[1] == pid:
                found[int(entry)] = info[0]
    return found


def reap_orphans(runner):
    """Reap zombie children that no running command owns; return the live strangers.

    Holding the runner's lock while scanning means a command that is just being started
    (and may already have exited) is never mistaken for an orphan.
    """
    strangers = []
    with runner.lock:
        owned = runner.running_pids()
        for pid, state in children_of(os.getpid()).items():
            if pid in owned:
                continue
            if state == "Z":
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
            else:
                strangers.append(pid)
    return strangers


class OrphanReaper(threading.Thread):
    """Background thread that reaps orphans every REAP_INTERVAL seconds until stopped."""

    def __init__(self, runner, interval=REAP_INTERVAL):
        super().__init__(name="orphan-reaper", daemon=True)
        self.runner = runner
        self.interval = interval
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.wait(self.interval):
            try:
                reap_orphans(self.runner)
            except Exception:  # never let housekeeping end the worker
                log.exception("orphan reaper pass failed")


class GroupLedger:
    """The state file listing the process groups this worker's commands run in."""

    def __init__(self, path):
        self.path = path
        self._lock = threading.Lock()
        self._groups = {}
        self._me = (os.getpid(), _stat(os.getpid())[3])

    def add(self, pgid):
        info = _stat(pgid)
        with self._lock:
            self._groups[pgid] = info[3] if info else 0
            self._write()

    def remove(self, pgid):
        with self._lock:
            self._groups.pop(pgid, None)
            self._write()

    def _write(self):
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as handle:
            json.dump({"pid": self._me[0], "start": self._me[1],
                       "groups": [[g, t] for g, t in self._groups.items()]}, handle)
        os.replace(tmp, self.path)

    def sweep_previous(self):
        """Kill the groups a dead predecessor recorded; return the pgids killed."""
        try:
            with open(self.path) as handle:
                state = json.load(handle)
        except (OSError, ValueError):
            return []
        owner = _stat(state.get("pid", -1))
        if owner and owner[3] == state.get("start") and state.get("pid") != os.getpid():
            log.warning("worker state %s belongs to running pid %s; not sweeping",
                        self.path, state["pid"])
            return []
        killed = []
        for pgid, start in state.get("groups", []):
            leader = _stat(pgid)
            if leader is None or leader[3] == start:  # the group, not a reused pid
                try:
                    os.killpg(pgid, signal.SIGKILL)
                    killed.append(pgid)
                except OSError:
                    pass
        if killed:
            log.warning("killed %d command group(s) left by a killed worker: %s",
                        len(killed), killed)
        with self._lock:
            self._write()
        return killed
