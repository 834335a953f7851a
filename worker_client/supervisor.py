"""The supervisor of one named worker's processes on a host.

``runworkers`` is this supervisor: it loads the config, then forks ``worker.processes``
worker processes (each a WorkerPool of ``worker.threads`` threads) and keeps that many
serving: a process that dies is replaced (its exit status or signal logged, with a
growing pause when it keeps dying young); a process past a recycling limit, or whose
Python task hung past its timeout, says so (SIGUSR1) as it stops taking jobs, and its
replacement is started at once, while it finishes what it runs. SIGTERM/SIGINT are passed
on to every process (they drain within ``worker.grace``; a second signal forces).

The supervisor holds no connection and runs no job: it only forks, waits for signals
(taken synchronously with sigtimedwait, so there is no handler to race) and reaps. A
worker process dies with it (PR_SET_PDEATHSIG SIGKILL): a SIGKILLed supervisor leaves what
a SIGKILLed single worker always left, which each process's keeper cleans up.
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gearman_frame.errors import EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE

from .notify import sd_notify

log = logging.getLogger("worker_client.supervisor")

#: A worker process tells its supervisor: "I stop taking jobs: start my replacement".
RETIRING = signal.SIGUSR1
#: A worker process tells its supervisor: "I am connected and serving".
READY = signal.SIGUSR2
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
WATCHED = {signal.SIGCHLD, signal.SIGHUP, RETIRING, READY, *STOP_SIGNALS}
#: A process that dies sooner than this after its start counts toward a crash loop.
CRASH_WINDOW = 10.0
#: The pause before restarting a slot that crash-loops: doubles per death, up to the max.
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0
#: Seconds between two looks at the slots when no signal comes.
TICK = 0.25
PR_SET_PDEATHSIG = 1


@dataclass
class Process:
    """One forked worker process."""

    pid: int
    slot: int
    instance: int
    started: float
    ready: bool = False
    retiring: bool = False


@dataclass
class Slot:
    """One of the ``processes`` places: it always has one process that takes jobs."""

    index: int
    failures: int = 0
    restart_at: float | None = 0.0
    #: ledger instances of this slot's live processes (a draining one keeps its own)
    instances: set = field(default_factory=set)


def die_with_parent(parent: int) -> None:
    """In a forked child: be SIGKILLed when the supervisor dies; exit now if it already
    did (it may die between the fork and the prctl)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(EXIT_OK)


def describe_status(status: int) -> str:
    """``exit status N`` or ``signal NAME`` for a waitpid status."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            return f"signal {signal.Signals(number).name}"
        except ValueError:
            return f"signal {number}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


class Supervisor:
    """Forks and keeps ``processes`` worker processes of one named worker.

    ``serve(slot_label, instance)`` runs in the forked child and returns its exit code:
    ``slot_label`` is None for a single process (named as the worker itself), else
    ``p1``, ``p2`` ...; ``instance`` (0, 1 ...) tells apart the state folders of a slot's
    draining process and its replacement.
    """

    def __init__(self, name: str, processes: int, serve: Callable[[str | None, int], int]):
        self.name = name
        self.slots = [Slot(i + 1) for i in range(processes)]
        self.serve = serve
        self.processes: dict[int, Process] = {}
        self.stopping = False
        self.exit_code = EXIT_OK
        self.announced = False  # READY sent to systemd

    # -- the loop
    def run(self) -> int:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)
        try:
            while True:
                self._start_due()
                if self.stopping and not self.processes:
                    return self.exit_code
                info = signal.sigtimedwait(WATCHED, TICK)
                if info is not None:
                    self._on_signal(info)
                self._reap()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def _on_signal(self, info) -> None:
        number = info.si_signo
        if number in STOP_SIGNALS:
            self.stop(signal.Signals(number).name)
        elif number == RETIRING:
            self._retiring(info.si_pid)
        elif number == READY:
            process = self.processes.get(info.si_pid)
            if process is not None:
                process.ready = True
                self._announce()
        elif number == signal.SIGHUP:
            log.warning("worker %s: SIGHUP: reloading is not supported yet; still serving",
                        self.name)

    def _announce(self) -> None:
        """Tell systemd READY once every slot has a process that serves."""
        serving = {p.slot for p in self.processes.values() if p.ready and not p.retiring}
        if not self.announced and len(serving) == len(self.slots):
            self.announced = True
            sd_notify("READY=1", f"STATUS=serving: {len(self.slots)} process(es)",
                      f"MAINPID={os.getpid()}")

    def stop(self, why: str) -> None:
        """Pass a stop on to every process: the first drains, a second forces."""
        if not self.stopping:
            log.info("worker %s: stopping %d process(es) (%s)", self.name,
                     len(self.processes), why)
            sd_notify("STOPPING=1", f"STATUS=draining ({why})")
        self.stopping = True
        for pid in list(self.processes):
            self._signal(pid, signal.SIGTERM)

    # -- processes
    def _start_due(self) -> None:
        if self.stopping:
            return
        now = time.monotonic()
        for slot in self.slots:
            due = slot.restart_at
            if due is not None and now >= due:
                slot.restart_at = None
                self._fork(slot)

    def _fork(self, slot: Slot) -> None:
        instance = min(set(range(len(slot.instances) + 1)) - slot.instances)
        label = None if len(self.slots) == 1 else f"p{slot.index}"
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker process: never returns into the supervisor's code
            code = EXIT_USAGE
            try:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, WATCHED)
                die_with_parent(parent)
                os.environ.pop("NOTIFY_SOCKET", None)  # systemd hears the supervisor only
                code = self.serve(label, instance)
            except BaseException:  # noqa: B036 - whatever happens, exit with a code
                log.exception("worker process %s failed", label or self.name)
            finally:
                logging.shutdown()
                os._exit(code)
        slot.instances.add(instance)
        self.processes[pid] = Process(pid, slot.index, instance, time.monotonic())
        log.info("worker %s: process %s started (pid %d)", self.name,
                 label or "", pid)

    def _retiring(self, pid: int) -> None:
        process = self.processes.get(pid)
        if process is None or process.retiring:
            return
        process.retiring = True
        slot = self.slots[process.slot - 1]
        if not self.stopping:
            slot.restart_at = time.monotonic()  # its replacement starts now
        log.info("worker %s: process pid %d is retiring; its replacement starts now",
                 self.name, pid)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            process = self.processes.pop(pid, None)
            if process is not None:
                self._ended(process, status)

    def _ended(self, process: Process, status: int) -> None:
        slot = self.slots[process.slot - 1]
        slot.instances.discard(process.instance)
        how = describe_status(status)
        code = os.waitstatus_to_exitcode(status)
        if self.stopping or (process.retiring and code == EXIT_OK):
            log.info("worker %s: process pid %d ended (%s)", self.name, process.pid, how)
            return
        if not process.ready and code in (EXIT_USAGE, EXIT_UNREACHABLE):
            # it could not start (a plugin, no server): the others cannot either
            log.error("worker %s: process pid %d could not start (%s); stopping",
                      self.name, process.pid, how)
            self.exit_code = code
            self.stop("a process could not start")
            return
        if process.retiring:  # its replacement already runs
            log.error("worker %s: retiring process pid %d died (%s)", self.name,
                      process.pid, how)
            return
        young = time.monotonic() - process.started < CRASH_WINDOW
        slot.failures = slot.failures + 1 if young or not process.ready else 1
        # the first death is replaced at once; a slot that keeps dying young waits more
        pause = (min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (slot.failures - 2))
                 if slot.failures > 1 else 0.0)
        slot.restart_at = time.monotonic() + pause
        log.error("worker %s: process pid %d died (%s); restarting it%s", self.name,
                  process.pid, how, f" in {pause:g}s (crash loop)" if pause else "")

    @staticmethod
    def _signal(pid: int, number: int) -> None:
        try:
            os.kill(pid, number)
        except ProcessLookupError:
            pass


def tell_supervisor(number: int) -> None:
    """From a worker process: signal the supervisor (its parent)."""
    try:
        os.kill(os.getppid(), number)
    except OSError:
        pass
