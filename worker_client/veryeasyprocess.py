"""veryeasyprocess: run a command and kill its whole process group at the deadline.

``subprocess.run(timeout=)`` kills only the direct child, so a shell's background
grandchildren survive as orphans. Here every command starts in a new session (its own
process group); at the deadline the group gets SIGTERM, then SIGKILL after a short grace;
when the command exits on its own, whatever it left running in its group is killed too;
every child is reaped. Output comes through pipes read while the command runs and is kept
up to a bound (the last ``tail_bytes``, or the first for a raw job's stdout), the rest
counted and dropped (capture.py), so a command printing 500 MB grows neither the worker's
memory nor a disk; results carry the kept bytes and the total sizes.

``shell_2_tty`` streams output to the worker's own stdout; ``shell_2_tempfile`` captures
it. Both return a :class:`ProcessResult`.
"""
from __future__ import annotations

import errno
import itertools
import logging
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from gearman_frame.config import DEFAULT_PROGRESS_INTERVAL as PROGRESS_INTERVAL

from .capture import Capture, Pump, ThreadPipes, anonymous_file, file_tail
from .groups import KILL_GRACE, Child, group_alive, kill_group, kill_with_group, wait_gone
from .procfs import boot_ticks, children_since, environ_of, group_members, proc_stat
from .process_result import ProcessResult
from .spawn import Environment, spawn
from .waiter import Waiter

log = logging.getLogger(__name__)

#: Environment variable that tags each command's processes with the run they belong to,
#: so ones that leave the process group (setsid) can still be found and killed.
TAG_VARIABLE = "GEARMAN_FRAME_RUN"
#: Reaped commands remembered so scans skip their pids (a few per running thread).
RECENT_PIDS = 256
#: Bytes of stdout/stderr kept (the last ones) in a result.
TAIL_BYTES = 64 * 1024
#: Looks for escaped processes after a command: each kills what the one before found
#: and looks again for what those orphaned (a setsid child with a child of its own).
ESCAPE_PASSES = 4
_TAG_PREFIX = f"{TAG_VARIABLE}=".encode()


_DEVNULL_FD = None
#: Marks "no input" for a command (like subprocess.DEVNULL, without importing subprocess).
DEVNULL = object()


def _popen_io(handle):
    return subprocess.DEVNULL if handle is DEVNULL else handle


def _fd(handle):
    """The descriptor for a stdio target: a descriptor, a file object, DEVNULL, or None
    (inherit)."""
    global _DEVNULL_FD
    if handle is None or isinstance(handle, int):
        return handle
    if handle is DEVNULL:
        if _DEVNULL_FD is None:
            _DEVNULL_FD = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        return _DEVNULL_FD
    return handle.fileno()


class Runner:
    """Runs commands; tracks the process groups it started so they can be killed.

    ``on_start(pgid, start_ticks)`` / ``on_end(pgid)`` let the worker record running groups (the
    state file that a restarted worker sweeps); ``cancel_all()`` kills every running
    group at once (the end of a graceful stop's grace period).
    """

    def __init__(self, on_start=None, on_end=None, kill_grace=KILL_GRACE, spool_dir=None):
        self.kill_grace = kill_grace
        #: Folder for a command's stdin file (the worker's own state folder, not a shared
        #: temp folder); None: $TMPDIR or /tmp.
        self.spool_dir = spool_dir
        self._on_start = on_start
        self._on_end = on_end
        self._lock = threading.RLock()
        self._running = {}  # pid -> Child (or Popen, for a command with a cwd)
        self._start_ticks = {}  # pid -> clock tick just before it started
        #: The last commands reaped, oldest first: pids an escaped-process scan need not
        #: read (a dict: ordered, and a set for lookups).
        self._reaped = {}
        self._cancelled = set()
        self._user_cancelled = set()
        self._local = threading.local()
        self._tags = itertools.count()
        #: Unique to this runner (a pid alone may be reused by another worker later).
        self.run_tag = f"{os.getpid()}x{os.urandom(4).hex()}"
        self._environment = Environment(os.environ)
        self._executables = {}
        self.spawning = 0
        #: Children of this process that no command started (the keeper): never taken
        #: for a command's escaped processes, so not read.
        self.not_commands = set()

    @property
    def lock(self):
        """Guards the registry of running children; the orphan reaper holds it while it
        scans, so no child is started meanwhile."""
        return self._lock

    @property
    def tag_prefix(self):
        """The start of the environment entry every process of this runner's commands
        carries (``GEARMAN_FRAME_RUN=TAG-``): what a keeper looks for."""
        return f"{TAG_VARIABLE}={self.run_tag}-"

    def running_starts(self):
        """``{pid: start ticks}`` of the running commands."""
        with self._lock:
            return dict(self._start_ticks)

    def running_pids(self):
        with self._lock:
            return set(self._running)

    def cancel(self, pid) -> bool:
        """Kill the running command whose group is ``pid`` on request; its result says
        so (``user_cancelled``). False if no such command runs."""
        with self._lock:
            proc = self._running.get(pid)
            if proc is None:
                return False
            self._user_cancelled.add(pid)
        kill_group(proc.pid, self.kill_grace, proc)
        return True

    def cancel_all(self):
        """Kill every running command's process group; return how many there were."""
        with self._lock:
            procs = list(self._running.values())
            self._cancelled.update(p.pid for p in procs)
        for proc in procs:
            kill_group(proc.pid, self.kill_grace, proc)
        return len(procs)

    def run(self, argv: list[str] | str, shell: bool = False, cwd: str | None = None,
            env: dict[str, str] | None = None, timeout: float | None = None,
            stdin_data: bytes | None = None, capture: bool = True, keep_output: bool = False,
            tail_bytes: int = TAIL_BYTES, head_stdout: bool = False,
            on_tick: Callable[[float], Any] | None = None,
            tick: float = PROGRESS_INTERVAL,
            on_output: Callable[[int, bytes], Any] | None = None) -> ProcessResult:
        """Run ``argv`` (a list; a string needs ``shell=True``) and return a ProcessResult.

        Each stream keeps its last ``tail_bytes`` (stdout its first, with
        ``head_stdout``). ``on_tick(elapsed_seconds)`` is called every ``tick`` seconds
        while it runs.
        """
        if isinstance(argv, str) and not shell:
            raise TypeError("a command string needs shell=True; pass a list for argv")
        tag = f"{self.run_tag}-{next(self._tags)}"
        extra = dict(env) if env else {}
        extra[TAG_VARIABLE] = tag
        stdin = self._stdin(stdin_data)
        pump, pipes = None, None
        if not capture:
            files = [None, None]
        elif keep_output:
            files = self._named_files()
        else:
            pipes = self._thread_pipes()
            listen = ((lambda chunk: on_output(1, chunk)), (lambda chunk: on_output(2, chunk))) \
                if on_output is not None else (None, None)
            pump = Pump(pipes.open(), [Capture(tail_bytes, head=head_stdout,
                                               listener=listen[0]),
                                       Capture(tail_bytes, listener=listen[1])])
            files = list(pipes.targets)
        started, started_ticks = time.monotonic(), boot_ticks()
        try:
            try:
                proc = self._spawn(argv, shell, cwd, extra, stdin, files[0], files[1],
                                   started_ticks)
            except OSError as err:  # not found, not executable: as a shell reports it
                return self._not_started(argv, err, capture)
            finally:
                if pipes is not None:
                    pipes.close_write_ends()
            if self._on_start:
                self._on_start(proc.pid, started_ticks)
            try:
                timed_out = not self._wait(proc, started, timeout, on_tick, tick, pump)
                if timed_out:
                    kill_group(proc.pid, self.kill_grace, proc)
                    proc.wait()
                duration = time.monotonic() - started
                leftovers = self._kill_leftovers(proc.pid)
                escaped = self._kill_escaped(tag, proc.pid, started_ticks)
                if pump is not None:
                    pump.drain()
            finally:
                with self._lock:
                    self._running.pop(proc.pid, None)
                    self._start_ticks.pop(proc.pid, None)
                    self._remember_reaped(proc.pid)
                    cancelled = proc.pid in self._cancelled
                    self._cancelled.discard(proc.pid)
                    user_cancelled = proc.pid in self._user_cancelled
                    self._user_cancelled.discard(proc.pid)
                if self._on_end:
                    self._on_end(proc.pid)
        finally:
            if pump is not None:
                pump.close()
            if stdin not in (None, DEVNULL):
                stdin.close()
        result = ProcessResult(argv=argv, exit_code=proc.returncode if proc.returncode >= 0 else None,
                               signal=-proc.returncode if proc.returncode < 0 else None,
                               timed_out=timed_out, duration_s=duration,
                               killed_leftovers=leftovers, cancelled=cancelled,
                               user_cancelled=user_cancelled, pid=proc.pid,
                               escaped=escaped)
        if pump is not None:
            kept_out, kept_err = pump.captures
            result.stdout, result.stdout_size = kept_out.value(), kept_out.size
            result.stderr, result.stderr_size = kept_err.value(), kept_err.size
        elif capture:
            self._collect_files(result, files, tail_bytes)
        return result

    def _spawn(self, argv, shell, cwd, extra, stdin, stdout, stderr, started_ticks=0):
        """Start a child in its own session and register it. Several threads may spawn at
        once; ``spawning`` tells the orphan reaper to skip its pass meanwhile, so a child
        that exits before it is registered is never reaped (and its status lost) by it.

        posix_spawn (setsid, dup2; see spawn.py) costs a third of what subprocess.Popen
        does and runs without the GIL; Popen remains for a working directory."""
        if shell:
            argv = ["/bin/sh", "-c", argv]
        with self._lock:
            self.spawning += 1
        proc: Any = None
        try:
            if cwd is None:
                dup2 = tuple((_fd(handle), target)
                             for handle, target in ((stdin, 0), (stdout, 1), (stderr, 2))
                             if handle is not None)
                proc = Child(spawn(self._executable(argv[0], extra), argv, self._environment,
                                   extra, dup2))
            else:
                proc = subprocess.Popen(argv, cwd=cwd, env=self._environment.as_dict(extra),
                                        stdin=_popen_io(stdin),
                                        stdout=stdout, stderr=stderr, start_new_session=True,
                                        close_fds=True)
        finally:
            with self._lock:
                self.spawning -= 1
                if proc is not None:
                    self._running[proc.pid] = proc
                    self._start_ticks[proc.pid] = started_ticks
        return proc

    def _executable(self, name, extra):
        """The path of ``name`` on the command's PATH, looked up once: posix_spawnp would
        try every PATH entry in the child each time, holding the GIL while it does."""
        path = self._environment.get("PATH", extra, os.defpath)
        key = (name, path)
        found = self._executables.get(key)
        if found is None:
            found = name if "/" in name else shutil.which(name, path=path)
            if found is None:
                raise FileNotFoundError(2, "No such file or directory", name)
            self._executables[key] = found
        return found

    def _remember_reaped(self, pid):
        """(the lock is held)"""
        self._reaped[pid] = None
        if len(self._reaped) > RECENT_PIDS:
            del self._reaped[next(iter(self._reaped))]

    def _not_started(self, argv, err, capture):
        name = "/bin/sh" if isinstance(argv, str) else argv[0]
        code = errno.errorcode.get(err.errno, "error") if err.errno else "error"
        reason = f"{code}: {err.strerror or err}"
        message = f"cannot run {name[:200]}: {reason}\n".encode("utf-8", "backslashreplace")
        log.warning("cannot start the command %s: %s", name[:200], reason)
        return ProcessResult(argv=argv, exit_code=127, signal=None, timed_out=False,
                             duration_s=0.0, stderr=message if capture else b"",
                             start_error=reason)

    def _wait(self, proc, started, timeout, on_tick, tick, pump=None):
        """Wait for the deadline, calling ``on_tick`` between slices (and reading the
        command's output meanwhile); True if it exited."""
        deadline = None if timeout is None else started + timeout
        waiter = Waiter(proc, pump)
        try:
            while True:
                left = None if deadline is None else deadline - time.monotonic()
                if on_tick is None or (left is not None and left <= tick):
                    return waiter.wait(left)
                if waiter.wait(tick):
                    return True
                try:
                    on_tick(time.monotonic() - started)
                except Exception:  # progress is best effort; the command goes on
                    log.warning("progress callback failed", exc_info=True)
        finally:
            waiter.close()

    def _thread_pipes(self):
        pipes = getattr(self._local, "pipes", None)
        if pipes is None:
            pipes = self._local.pipes = ThreadPipes(_fd(DEVNULL))
        return pipes

    def _named_files(self):
        """Two named files for stdout/stderr that the caller keeps."""
        return [tempfile.NamedTemporaryFile(prefix="gf-out-", delete=False, dir=self.spool_dir)
                for _ in range(2)]

    def _stdin(self, data):
        if data is None:
            return DEVNULL
        handle = anonymous_file(self.spool_dir)
        handle.write(data)
        handle.seek(0)
        return handle

    def _kill_escaped(self, tag, first_pid, started_ticks):
        """Kill processes of this run that left its group (``setsid``, daemons).

        As a subreaper this process inherits them once their parent exits; they are found
        among the children it adopted after the command started (see ``children_since``:
        usually one read of a short list). One carrying this run's tag is this run's; one
        carrying no tag at all (``env -i`` cleared it) is killed once every command that
        was running when it started has ended (this one last). Each is killed with its
        process group, and the look is repeated for what that orphaned in turn."""
        entry = f"{TAG_VARIABLE}={tag}".encode()
        killed = []
        for _ in range(ESCAPE_PASSES):
            # (the live registry of running commands: a membership test needs no copy)
            found = [pid for pid in children_since(first_pid, skip=self._running,
                                                   reaped=self._reaped,
                                                   others=self.not_commands)
                     if pid not in killed
                     and self._is_ours(pid, entry, first_pid, started_ticks)]
            if not found:
                break
            for pid in found:
                kill_with_group(pid)
            killed += found
            wait_gone(found)
        if killed:
            log.warning("command escaped its process group (setsid/daemon); killed %s",
                        killed)
        return tuple(killed)

    def _is_ours(self, pid, entry, own, started_ticks):
        """True if the adopted child ``pid`` belongs to the run whose tag is ``entry`` and
        whose command is ``own``."""
        variables = environ_of(pid)
        if variables is None:
            return False
        if entry in variables:
            return True
        if any(v.startswith(_TAG_PREFIX) for v in variables):
            return False  # another run's
        info = proc_stat(pid)
        if info is None or info[0] == "Z" or info[3] < started_ticks:
            return False
        with self._lock:  # a command that started before it and still runs may own it
            return not any(ticks <= info[3] for other, ticks in self._start_ticks.items()
                           if other != own)

    def _kill_leftovers(self, pgid):
        if not group_alive(pgid):  # the common case, one syscall
            return 0
        members = group_members(pgid)
        if members:
            log.warning("command group %s left %d process(es) running; killing them: %s",
                        pgid, len(members), members)
            kill_group(pgid, self.kill_grace)
        return len(members)

    def _collect_files(self, result, files, limit):
        out, err = files
        result.stdout, result.stdout_size = file_tail(out, limit)
        result.stderr, result.stderr_size = file_tail(err, limit)
        result.stdout_path, result.stderr_path = out.name, err.name
        out.close()
        err.close()


#: The runner the module-level helpers use.
default_runner = Runner()


def _argv(cmd):
    return (cmd, True) if isinstance(cmd, str) else (list(cmd), False)


def shell_2_tty(cmd, cwd=None, timeout=600, env=None, stdin_data=None, runner=None):
    """Run ``cmd`` (a string runs in a shell) with output streamed to our stdout."""
    argv, shell = _argv(cmd)
    return (runner or default_runner).run(argv, shell=shell, cwd=cwd, env=env, timeout=timeout,
                                          stdin_data=stdin_data, capture=False)


def shell_2_tempfile(cmd, cwd=None, timeout=10, env=None, stdin_data=None, keep_output=False,
                     runner=None):
    """Run ``cmd`` (a string runs in a shell) with output captured to temp files.

    The result carries the last 64 KiB of each stream; with ``keep_output`` the files stay
    and their paths are in ``stdout_path``/``stderr_path`` (the caller removes them).
    """
    argv, shell = _argv(cmd)
    return (runner or default_runner).run(argv, shell=shell, cwd=cwd, env=env, timeout=timeout,
                                          stdin_data=stdin_data, keep_output=keep_output)


def quote(argv):
    """A shell-readable rendering of an argv, for logs."""
    return argv if isinstance(argv, str) else shlex.join(argv)
