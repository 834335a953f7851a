"""Process hygiene for a worker: nothing a command started may outlive it unnoticed.

* The worker becomes a child subreaper, so the grandchildren of killed commands are
  re-parented to it (not to init) and reaped here.
* The process groups of running commands are recorded in a state folder (a file each).
  A keeper (a tiny bash started in its own session, reading a pipe from the worker)
  kills those groups the moment the worker dies, even by SIGKILL; a worker that starts
  after a predecessor of the same name also sweeps whatever that one left.
"""
import ctypes
import logging
import os
import signal
import threading
import time

from .veryeasyprocess import all_pids, proc_stat

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


def reap_orphans(runner):
    """Reap zombie children that no running command owns (re-parented grandchildren).

    The pass is skipped while a command is being started (it may exit before it is
    registered) and holds the runner's lock, so none starts during the scan.
    """
    me = os.getpid()
    with runner.lock:
        if runner.spawning:  # a child may be between fork and registration: next pass
            return
        owned = runner.running_pids()
        for pid in all_pids():
            info = proc_stat(pid)
            if info and info[1] == me and info[0] == "Z" and pid not in owned:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass


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
    """A folder with one empty file per running command group, named ``PGID-START``
    (START: the leader's start time, so a reused pid is never taken for the group), and an
    ``owner`` file naming the worker process. Creating and removing a file per command is
    three system calls, cheap enough for the job loop and durable through a SIGKILL."""

    def __init__(self, path):
        self.path = path
        self._names = {}
        os.makedirs(path, exist_ok=True)

    def _owner_file(self):
        return os.path.join(self.path, "owner")

    def claim(self):
        """Record this process as the folder's owner."""
        me = proc_stat(os.getpid())
        with open(self._owner_file(), "w") as handle:
            handle.write(f"{os.getpid()} {me[3]}\n")

    def add(self, pgid):
        info = proc_stat(pgid)
        name = os.path.join(self.path, f"{pgid}-{info[3] if info else 0}")
        os.close(os.open(name, os.O_CREAT | os.O_WRONLY, 0o600))
        self._names[pgid] = name

    def remove(self, pgid):
        name = self._names.pop(pgid, None)
        if name:
            try:
                os.unlink(name)
            except FileNotFoundError:
                pass

    def _entries(self):
        return [e for e in os.listdir(self.path) if e[:1].isdigit()]

    def _previous_owner_alive(self):
        try:
            with open(self._owner_file()) as handle:
                pid, start = (int(x) for x in handle.read().split())
        except (OSError, ValueError):
            return False
        owner = proc_stat(pid)
        return pid != os.getpid() and owner is not None and owner[3] == start

    def sweep_previous(self):
        """Kill the groups a dead predecessor recorded; return the pgids killed."""
        if self._previous_owner_alive():
            log.warning("worker state %s belongs to a running worker; not sweeping", self.path)
            return []
        killed = []
        for entry in self._entries():
            pgid, _, start = entry.partition("-")
            leader = proc_stat(int(pgid))
            if leader is None or str(leader[3]) == start:  # the group, not a reused pid
                try:
                    os.killpg(int(pgid), signal.SIGKILL)
                    killed.append(int(pgid))
                except OSError:
                    pass
            os.unlink(os.path.join(self.path, entry))
        if killed:
            log.warning("killed %d command group(s) left by a killed worker: %s",
                        len(killed), killed)
        self.claim()
        return killed


#: The keeper: waits for EOF on stdin (the worker is gone), then kills every group that
#: the worker's state folder still lists.
KEEPER_SCRIPT = """read _ignored
cd "$1" || exit 0
for entry in [0-9]*-*; do
  [ -e "$entry" ] && kill -KILL -- "-${entry%%-*}" 2>/dev/null
done
exit 0
"""


class Keeper:
    """Kills the worker's command groups when the worker dies, however it dies (bash: its
    kill takes a process group; dash's does not)."""

    def __init__(self, ledger_path):
        read_end, self._write_end = os.pipe()  # both close on exec: commands never hold them
        try:
            self.pid = os.posix_spawnp("bash", ["bash", "-c", KEEPER_SCRIPT,
                                                "gearman-frame-keeper", ledger_path],
                                       os.environ, setsid=True,
                                       file_actions=[(os.POSIX_SPAWN_DUP2, read_end, 0)])
        finally:
            os.close(read_end)

    def release(self, timeout=5.0):
        """A clean stop: let the keeper go (its sweep finds nothing left to kill)."""
        if self._write_end is not None:
            os.close(self._write_end)
            self._write_end = None
            deadline = time.monotonic() + timeout
            try:
                while time.monotonic() < deadline:
                    if os.waitpid(self.pid, os.WNOHANG)[0]:
                        return
                    time.sleep(0.01)
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except ChildProcessError:  # the orphan reaper got to it first
                pass
