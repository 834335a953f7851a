"""The supervisor of one named worker's processes on a host.

``runworkers`` is this supervisor: it loads the config, then forks ``worker.processes``
worker processes (each a WorkerPool of ``worker.threads`` threads) and keeps that many
serving: a process that dies is replaced (its exit status or signal logged, with a
growing pause when it keeps dying young); a process past a recycling limit, or whose
Python task hung past its timeout, says so (RETIRING) as it stops taking jobs, and its
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

#: The supervisor tells a worker process: "the config was reloaded: retire".
RETIRE = signal.SIGUSR1
# What worker processes tell their supervisor goes by real-time signals: those queue, one
# per sender, where two SIGUSR2 sent at the same moment would reach it as one (and a
# process's "serving" would go unheard, so READY never came).
#: A worker process tells its supervisor: "I stop taking jobs: start my replacement".
RETIRING = signal.SIGRTMIN + 1
#: A worker process tells its supervisor: "I am connected and serving".
READY = signal.SIGRTMIN + 2
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
    generation: int = 0
    ready: bool = False
    retiring: bool = False
    #: the pid of the process started to take over from it (a reload's rolling step)
    successor: int | None = None


@dataclass
class Slot:
    """One of the ``processes`` places: it always has one process that takes jobs."""

    index: int
    #: the worker.pools entry its process serves (None: every function)
    pool: str | None = None
    #: how its process is named (NAME.LABEL.THREAD; None: NAME.THREAD, a lone process)
    label: str | None = None
    failures: int = 0
    restart_at: float | None = 0.0
    #: ledger instances of this slot's live processes (a draining one keeps its own)
    instances: set = field(default_factory=set)


def make_slots(layout: list) -> list[Slot]:
    """The slots of a layout (a pool name, or None, per process), named readably: a lone
    process as the worker itself, else ``p1``, ``p2`` ... or ``POOL-p1`` ... per pool."""
    slots: list[Slot] = []
    counts: dict[str | None, int] = {}
    for index, pool in enumerate(layout, 1):
        counts[pool] = counts.get(pool, 0) + 1
        label = f"p{counts[pool]}" if pool is None else f"{pool}-p{counts[pool]}"
        slots.append(Slot(index, pool, None if layout == [None] else label))
    return slots


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

    def __init__(self, name: str, layout: list,
                 serve: Callable[[str | None, int, str | None], int],
                 reload: Callable[[], tuple] | None = None,
                 side: Callable[[], int] | None = None,
                 on_gone: Callable[[int, bool], None] | None = None):
        self.name = name
        #: a helper process kept beside the workers (the metrics server), if any
        self.side = side
        self.side_pid: int | None = None
        self.side_restart_at = 0.0
        #: on_gone(pid, died) after a worker process ended (its metrics' live gauges go;
        #: ``died``: it did not stop or retire, and is replaced)
        self.on_gone = on_gone
        self.slots = make_slots(layout)
        self.serve = serve
        #: reload() -> (processes, serve) from the config read again; raises to refuse it
        self.reload = reload
        self.generation = 0
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
                self._roll()
                if self.stopping and not self.processes:
                    if self.side_pid is not None:
                        self._signal(self.side_pid, signal.SIGTERM)
                        os.waitpid(self.side_pid, 0)
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
            self._reload()

    # -- reload: read the config again, then replace the processes one by one
    def _reload(self) -> None:
        if self.reload is None or self.stopping:
            return
        log.info("worker %s: SIGHUP: reading the config again", self.name)
        try:
            layout, serve = self.reload()
        except Exception as err:  # a bad config: refused, nothing changes
            log.error("worker %s: reload refused, still serving the previous config: %s",
                      self.name, err)
            sd_notify("STATUS=reload refused: " + str(err)[:200])
            return
        sd_notify("RELOADING=1", "STATUS=reloading")
        self.announced = False
        self.serve = serve
        self.generation += 1
        fresh = make_slots(layout)
        for slot in fresh:  # a slot that has a process: the rolling replaces it
            if slot.index <= len(self.slots):
                old = self.slots[slot.index - 1]
                slot.instances, slot.restart_at = old.instances, old.restart_at
        for process in self.processes.values():
            if process.slot > len(fresh):  # a slot that is no more: just retire
                process.successor, process.retiring = -1, True
                self._signal(process.pid, RETIRE)
        self.slots = fresh
        log.info("worker %s: config reloaded; replacing %d process(es) one by one",
                 self.name, len(self.processes))

    def _roll(self) -> None:
        """One step of a rolling replacement: start a successor for one process of an
        older config, and once it serves, ask the old one to retire (it finishes its
        jobs and exits); then the next."""
        if self.stopping:
            return
        stale = [p for p in self.processes.values()
                 if p.generation < self.generation and not p.retiring]
        for process in stale:
            if process.successor is None:
                if any(p.generation == self.generation and not p.ready
                       for p in self.processes.values()):
                    return  # one at a time: wait for the last successor to serve
                process.successor = self._fork(self.slots[process.slot - 1])
                return
            successor = self.processes.get(process.successor)
            if successor is not None and successor.ready:
                process.retiring = True
                self._signal(process.pid, RETIRE)
                return
            if successor is None and process.successor != -1:
                process.successor = None  # it died: try again
                return
        if not stale and self.generation and not self.announced:
            self._announce()

    def _announce(self) -> None:
        """Tell systemd READY once every slot has a process that serves."""
        serving = {p.slot for p in self.processes.values() if p.ready and not p.retiring}
        if self.generation and any(p.generation < self.generation
                                   for p in self.processes.values() if not p.retiring):
            return  # still rolling
        if not self.announced and len(serving) >= len(self.slots):
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
        if self.side is not None and self.side_pid is None and now >= self.side_restart_at:
            self._fork_side()
        for slot in self.slots:
            due = slot.restart_at
            if due is not None and now >= due:
                slot.restart_at = None
                self._fork(slot)

    def _fork(self, slot: Slot) -> int:
        instance = min(set(range(len(slot.instances) + 1)) - slot.instances)
        label = slot.label
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker process: never returns into the supervisor's code
            code = EXIT_USAGE
            try:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, WATCHED)
                die_with_parent(parent)
                os.environ.pop("NOTIFY_SOCKET", None)  # systemd hears the supervisor only
                code = self.serve(label, instance, slot.pool)
            except BaseException:  # noqa: B036 - whatever happens, exit with a code
                log.exception("worker process %s failed", label or self.name)
            finally:
                logging.shutdown()
                os._exit(code)
        slot.instances.add(instance)
        self.processes[pid] = Process(pid, slot.index, instance, time.monotonic(),
                                      self.generation)
        log.info("worker %s: process %s started (pid %d)", self.name,
                 label or "", pid)
        return pid

    def _fork_side(self) -> None:
        """Start the helper process (signals stay blocked there: it waits for them)."""
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            code = EXIT_USAGE
            try:
                die_with_parent(parent)
                code = self.side()  # type: ignore[misc]
            except BaseException:  # noqa: B036 - whatever happens, exit with a code
                log.exception("worker %s: the metrics process failed", self.name)
            finally:
                logging.shutdown()
                os._exit(code)
        self.side_pid = pid

    def _retiring(self, pid: int) -> None:
        process = self.processes.get(pid)
        if process is None or process.successor is not None:
            return  # a reload already started (or needs no) successor for it
        if process.retiring:
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
            if pid == self.side_pid:
                self.side_pid = None
                self.side_restart_at = time.monotonic() + BACKOFF_MAX / 10
                if not self.stopping:
                    log.error("worker %s: the metrics process died (%s); restarting it",
                              self.name, describe_status(status))
                continue
            process = self.processes.pop(pid, None)
            if process is not None:
                died = self._ended(process, status)
                if self.on_gone is not None:
                    self.on_gone(pid, died)

    def _ended(self, process: Process, status: int) -> bool:
        """Log how a worker process ended and schedule its replacement; True if it died
        (not a stop, a retirement or a failed start)."""
        how = describe_status(status)
        if process.slot > len(self.slots):  # its slot went with a reload
            log.info("worker %s: process pid %d ended (%s)", self.name, process.pid, how)
            return False
        slot = self.slots[process.slot - 1]
        slot.instances.discard(process.instance)
        code = os.waitstatus_to_exitcode(status)
        if self.stopping or (process.retiring and code == EXIT_OK):
            log.info("worker %s: process pid %d ended (%s)", self.name, process.pid, how)
            return False
        if not process.ready and code in (EXIT_USAGE, EXIT_UNREACHABLE):
            # it could not start (a plugin, no server): the others cannot either
            log.error("worker %s: process pid %d could not start (%s); stopping",
                      self.name, process.pid, how)
            self.exit_code = code
            self.stop("a process could not start")
            return False
        if process.retiring or process.successor is not None:  # replaced already
            log.error("worker %s: process pid %d, being replaced, died (%s)", self.name,
                      process.pid, how)
            return True
        young = time.monotonic() - process.started < CRASH_WINDOW
        slot.failures = slot.failures + 1 if young or not process.ready else 1
        # the first death is replaced at once; a slot that keeps dying young waits more
        pause = (min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (slot.failures - 2))
                 if slot.failures > 1 else 0.0)
        slot.restart_at = time.monotonic() + pause
        log.error("worker %s: process pid %d died (%s); restarting it%s", self.name,
                  process.pid, how, f" in {pause:g}s (crash loop)" if pause else "")
        return True

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
