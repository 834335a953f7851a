"""One worker process: K threads, each with its own connection to every server.

Thread ``i`` registers as ``NAME.i`` (``NAME.pN.i`` when the supervisor runs several
processes) and serves the configured functions; one more connection, ``NAME.ctl``, serves
only the control function ``__ctl__.NAME``, so a shutdown reaches a worker even when every
job thread is busy with a long command (under a supervisor, it is passed on to the
supervisor, which stops every process). The pool restarts a thread that died, stops
gracefully on a signal or a control ``shutdown`` job (stop taking jobs, let running
commands finish within ``grace``, then kill their process groups and leave those jobs for
gearmand to requeue), and stops at once on a second signal. Its watchdog answers a Python
task past its timeout as ``timeout`` and has the process replaced; past a recycling limit
(``worker.max_jobs``, ``max_lifetime``, ``max_memory``) it stops taking jobs, finishes its
own (no grace: they are not cut) and exits, its replacement already started.
"""
import logging
import os
import signal
import socket
import threading
import time
from typing import Any

from gearman_frame.queues import control_function
from gearman_frame.wire import JobFailed

from .deadletters import DeadLetterSpool, SpoolSender
from .hygiene import GroupLedger, Keeper, OrphanReaper, become_subreaper, reap_orphans
from .batches import BatchHandler
from .control import Control
from .gate import Gate
from .jobs import FunctionHandler, WorkerContext
from .metrics import Metrics
from .outgoing import Outgoing
from .stages import build as build_stages, encoded as encode_result
from .stats import Stats, resident_mib
from .supervisor import RETIRE, RETIRING, tell_supervisor
from .veryeasyprocess import Runner
from .serving_thread import ServingThread

log = logging.getLogger(__name__)

#: Seconds between two checks of thread health, task deadlines and recycling limits.
HEALTH_INTERVAL = 0.2
#: Seconds the threads get to close their connections once the pool is stopping.
JOIN_TIMEOUT = 5.0


def _gate(keyring):
    """The signature gate, when a key is configured (the keyring loads hashlib's
    OpenSSL, 3.7 MiB, only then)."""
    return None if keyring is None else Gate(keyring)


def _metrics(listen):
    """The Prometheus metrics of this process, when they are on (prometheus_client, 7.7
    MiB, is imported then only: see metrics.py)."""
    return Metrics() if listen else None


def worker_name(template):
    """Fill ``{hostname}`` and ``{pid}`` in a worker-name template."""
    return template.format(hostname=socket.gethostname(), pid=os.getpid())


#: Suffix of the control connection's client id (``NAME.ctl``).
CONTROL_SUFFIX = "ctl"
#: Label prefix of a batch task's thread (``NAME.batch-FUNCTION``).
BATCH_PREFIX = "batch-"


class WorkerPool:
    """The threads of one named worker and the policy for stopping them."""

    def __init__(self, config, functions, tasks, state_dir=None, spool_dir=None, name=None,
                 label=None, instance=0, supervised=False, threads=None):
        self.config = config
        #: the worker's name (its control function's); this process's adds its label
        self.fleet_name = name or worker_name(config.worker.name)
        self.name = self.fleet_name if label is None else f"{self.fleet_name}.{label}"
        self.supervised = supervised
        self.started = time.monotonic()
        self.jobs_taken = 0
        self.recycling = None  # why this process is being replaced, once it is
        self.retire_requested = None  # set by the supervisor's signal (a reload)
        self._jobs_lock = threading.Lock()
        self._after_timeout = []  # threads finishing jobs taken over from hung tasks
        self._lost_pids: set = set()  # commands killed: their connection to gearmand died
        self.thread_count = threads or config.worker.threads
        self.grace = config.worker.grace
        self.servers = config.servers
        self.stop_requested = threading.Event()
        self.force_requested = threading.Event()
        self.stop_reasons = []
        ledger_name = f"worker-{self.name}" + (f"~{instance}" if instance else "")
        ledger_path = os.path.join(state_dir, ledger_name) if state_dir else None
        self.ledger = GroupLedger(ledger_path) if ledger_path else None
        self.stats = Stats(_metrics(config.worker.metrics))

        def started(pgid, start_ticks):
            self.stats.command_started(pgid)
            if self.ledger:
                self.ledger.add(pgid, start_ticks)
        spool = DeadLetterSpool(spool_dir) if spool_dir else None
        #: Results no server took when their jobs ended wait here (beside dead letters).
        result_spool = (DeadLetterSpool(os.path.join(os.path.dirname(spool_dir), "results"))
                        if spool_dir else None)
        self.outgoing = Outgoing(config, self.name, self.stats, spool, result_spool)
        self.spool_sender = SpoolSender(spool, self.servers) if spool else None
        self.result_sender = SpoolSender(result_spool, self.servers) if result_spool else None
        self.runner = Runner(on_start=started,
                             on_end=self.ledger.remove if self.ledger else None,
                             spool_dir=ledger_path)
        self.context = WorkerContext(name=self.name, runner=self.runner,
                                     stopping=self.stop_requested,
                                     dead_letter=self.outgoing.dead_letter,
                                     publish=self.outgoing.publish_result,
                                     notice=self.outgoing.notice_start,
                                     send_step=self.outgoing.send_step,
                                     progress_interval=config.worker.progress_interval,
                                     max_kwargs=config.worker.max_kwargs,
                                     max_payload=config.worker.max_payload,
                                     gate=_gate(config.keyring), stats=self.stats,
                                     on_job=self._count_job if config.worker.max_jobs
                                     else None)
        self.claims = None
        if config.store.on:  # imported here: a worker without a ledger never loads it
            from .claims import Claims
            self.claims = self.context.claims = Claims(
                config.store.url, config.store.lease, config.store.dedup_ttl,
                config.store.result_ttl, self.stop_requested, self.thread_count + 2)
        self.caps = None
        capped = {fn: config.functions[fn] for fn in functions
                  if fn in config.functions and config.functions[fn].capped}
        if capped and self.claims is not None:
            from .caps import FleetCaps, without_batch_tasks
            self.caps = self.context.caps = FleetCaps(self.claims,
                                                      without_batch_tasks(capped, tasks),
                                                      self.stop_requested)
        if config.tracing.on:  # imported here: opentelemetry only when tracing is on
            from gearman_frame.tracing import open_tracing
            self.context.tracing = open_tracing(config, "worker")
        build_stages(self.context)
        batched = {fn for fn in functions if getattr(tasks.get(fn), "batch", None)}
        self.handlers = {fn: FunctionHandler(fn, config.functions.get(fn), tasks.get(fn),
                                             self.context) for fn in functions
                         if fn not in batched}
        #: Batch tasks: a thread each (label ``batch-FUNCTION``), holding what it gathers.
        self.batches = {f"{BATCH_PREFIX}{fn}": (BatchHandler(fn, config.functions.get(fn),
                                                             tasks[fn], self.context),
                                                tasks[fn].batch) for fn in sorted(batched)}
        self.threads = []
        self.keeper = None
        self.reaper = OrphanReaper(self.runner, ledger=self.ledger)
        #: Answers ``__ctl__.NAME``: shutdown, inspect, cancel, reload.
        self.control = Control(self)

    # -- start
    def start(self):
        """Sweep what a killed predecessor left, then start the threads."""
        if self.ledger:
            self.ledger.acquire(self.runner.tag_prefix)
            self.ledger.sweep_previous()
            self.keeper = Keeper(self.ledger.path, self.runner.tag_prefix)
            self.runner.not_commands.add(self.keeper.pid)
        become_subreaper()
        self.reaper.start()
        if self.claims is not None:
            self.claims.start()
        for sender in (self.spool_sender, self.result_sender):
            if sender:
                sender.start()  # also sends what a previous worker left waiting
        for label in [CONTROL_SUFFIX, *range(self.thread_count), *self.batches]:
            if self.stop_requested.is_set():  # a signal during start-up: stop starting
                break
            self.threads.append(self._spawn(label))

    def _spawn(self, label):
        tasks: dict[str, Any] = self.handlers
        batch = None
        if label == CONTROL_SUFFIX:  # the worker's, and (one of several) this process's
            tasks = {control_function(name): self.control
                     for name in {self.fleet_name, self.name}}
        elif label in self.batches:
            handler, batch = self.batches[label]
            tasks = {handler.name: handler}
        thread = ServingThread(self, label, tasks, batch)
        thread.start()
        return thread

    def wait_connected(self, timeout):
        """True once any thread is connected to any server, False after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(t.connected for t in self.threads):
                return True
            if self.stop_requested.wait(0.05):
                return False
        return False

    def wait_all_connected(self, timeout):
        """True once every thread is connected (to some server), False after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not all(t.connected for t in self.threads):
            if time.monotonic() > deadline or self.stop_requested.wait(0.02):
                return False
        return True

    # -- serve
    def serve(self):
        """Block until asked to stop, restarting dead threads; then stop gracefully."""
        while not self.stop_requested.wait(HEALTH_INTERVAL):
            self._check_health()
        self._stop()

    def _check_health(self):
        for i, thread in enumerate(self.threads):
            if not thread.is_alive():
                log.error("worker thread %s is dead; restarting it", thread.name)
                self.threads[i] = self._spawn(thread.label)
        self._watch_tasks()
        self._watch_connections()
        self._check_limits()
        self.stats.flush_metrics()
        if self.retire_requested:
            self.recycle(self.retire_requested)

    def _watch_connections(self):
        """Kill a command whose job came through a connection that is gone (the server
        closed it, or stopped answering for worker.dead_server_after): gearmand hands
        the job to another worker, and finishing it here would run it twice at once."""
        killed = set()
        for thread in self.threads:
            job = thread.wire.job_in_hand
            if job is None or not job.gone():
                continue
            entry = self.stats.running_in(thread.ident)
            pid = entry["pid"] if entry else None
            if pid and pid not in self._lost_pids and self.runner.cancel(pid):
                log.warning("gearmand %s is gone while job %s (%s) ran here: its process "
                            "group %d is killed; gearmand hands the job to another worker",
                            job.server, entry["job_id"], entry["function"], pid)
            if pid:
                killed.add(pid)
        self._lost_pids = killed

    # -- recycling: this process is replaced, its jobs finished, none lost or rerun
    def _count_job(self):
        with self._jobs_lock:
            self.jobs_taken += 1
            last = self.jobs_taken >= self.config.worker.max_jobs
        if last:
            self.recycle(f"worker.max_jobs ({self.config.worker.max_jobs}) reached")

    def _check_limits(self):
        limits = self.config.worker
        if limits.max_lifetime and time.monotonic() - self.started > limits.max_lifetime:
            self.recycle(f"worker.max_lifetime ({limits.max_lifetime:g}s) reached")
        if limits.max_memory:
            rss = resident_mib()
            if rss > limits.max_memory:
                self.recycle(f"RSS {rss:.0f} MiB over worker.max_memory "
                             f"({limits.max_memory:g} MiB)")

    def recycle(self, why):
        """Stop taking jobs now (from any thread), have the supervisor start this
        process's replacement, finish what runs, exit."""
        if self.recycling is not None or self.stop_requested.is_set():
            return
        self.recycling = why
        log.warning("worker %s: %s; finishing its jobs and handing over to a new process",
                    self.name, why)
        self.request_stop(f"recycled: {why}")
        for thread in self.threads:
            thread.stop()
        if self.supervised:
            tell_supervisor(RETIRING)

    # -- Python tasks past their timeout
    def _watch_tasks(self):
        for running in list(self.context.running.values()):
            if running.handler.expire(running):
                self._take_over(running)

    def cancel(self, job_id):
        """Stop the job ``job_id`` if this process runs it: a command's process group is
        killed (its sender gets ``cancelled``); a task's job is answered ``cancelled``
        and this process replaced (a thread cannot be killed)."""
        for entry in self.stats.running():
            if entry["job_id"] == job_id and entry["pid"] and self.runner.cancel(entry["pid"]):
                log.warning("job %s (%s) cancelled: process group %d killed", job_id,
                            entry["function"], entry["pid"])
                return b"ok: cancelled (its process group was killed)"
        for running in list(self.context.running.values()):
            if running.request.id == job_id and running.handler.take(running):
                self._take_over(running, cancel=True)
                return b"ok: cancelled (its worker process is being replaced)"
        return JobFailed(b"not running here")

    def _take_over(self, running, cancel=False):
        """Answer a hung (or cancelled) task's job from outside (its thread cannot be
        killed), its retries run in a thread of their own; this process is replaced."""
        if not running.retry:
            if not running.wire_worker.take_over(running.job):
                return  # it returned just now: it answers
            for thread in self.threads:
                if thread.wire is running.wire_worker:
                    thread.abandoned = True
        self.recycle(f"a task of {running.job.function} was cancelled" if cancel
                     else f"a task of {running.job.function} ran past its timeout")
        finish = running.handler.after_cancel if cancel else running.handler.after_timeout
        helper = threading.Thread(target=finish,
                                  args=(running, self._finish_taken), daemon=True,
                                  name=f"{self.name}.timeout")
        self._after_timeout.append(helper)
        helper.start()

    def _finish_taken(self, handler, running, result):
        """Publish, dead-letter and answer a job taken over from a hung task (from the
        helper thread: the job's own thread hangs, so results go through this process's
        sender client, not the job's connection)."""
        job, request = running.job, running.request
        result.duration_s = round(time.monotonic() - running.started, 6)
        result, encoded = encode_result(handler, result)
        self.stats.count(job.function, result.status)
        if self.claims is not None:
            from .claims import Stopping
            try:
                self.claims.finish(job.unique or request.id, result.status, encoded)
            except Stopping:
                log.error("worker stopping while the ledger was unreachable: the outcome "
                          "of %s is not recorded", request.id)
        if request.reply_to:
            self.outgoing.publish_result(job, request, result,
                                         time.time() - result.duration_s,
                                on_job_connection=False)
        if not result.ok and request.background:
            self.outgoing.dead_letter(job, result)
        running.wire_worker.answer_taken(job, encoded if result.ok else JobFailed(encoded))

    def request_stop(self, reason, force=False):
        """Ask for a graceful stop (a second request, or force=True, stops at once).

        Only sets flags, so a signal handler may call it; the serving loop logs and acts.
        A stop after a recycle is the first real stop: it starts the grace period.
        """
        recycled_only = all(r.startswith("recycled:") for r in self.stop_reasons)
        self.stop_reasons.append(reason)
        if (self.stop_requested.is_set() and not recycled_only) or force:
            self.force_requested.set()
        if not reason.startswith("recycled:"):
            self._grace_from = self._grace_from or time.monotonic()
        self.stop_requested.set()

    _grace_from: float | None = None

    def _busy(self):
        """Jobs still to finish: a serving thread's, or a retry's after a timeout; a
        thread whose task the watchdog took over is hung, and nobody waits for it."""
        def hung(thread):
            running = self.context.running.get(thread.ident)
            return running is not None and running.timed_out
        return (any(t.wire.busy and not t.abandoned for t in self.threads)
                or any(t.is_alive() and not hung(t) for t in self._after_timeout))

    def _stop(self):
        log.info("worker %s: stopping gracefully (%s); grace %ss", self.name,
                 self.stop_reasons[0], self.grace)
        for thread in self.threads:
            thread.stop()
        while self._busy():
            # a recycled process finishes its jobs (each bounded by its timeout); a stop
            # by signal or shutdown gives them worker.grace
            deadline = (float("inf") if self._grace_from is None
                        else self._grace_from + self.grace)
            self._watch_tasks()
            if self.force_requested.wait(0.05) or time.monotonic() > deadline:
                if self.force_requested.is_set():
                    log.warning("worker %s: forced stop (%s)", self.name, self.stop_reasons[-1])
                killed = self.runner.cancel_all()
                log.warning("worker %s: killed %d running command group(s) at the end of "
                            "the grace period; gearmand will requeue their jobs",
                            self.name, killed)
                break
        for thread in self.threads:
            if not thread.abandoned:
                thread.join(JOIN_TIMEOUT)
        self.stats.flush_metrics()
        self.reaper.stopped.set()
        for sender in (self.spool_sender, self.result_sender):
            if sender:
                sender.stop()
        if self.keeper:
            self.keeper.release()
        if self.caps is not None:
            self.caps.close()
        if self.claims is not None:
            self.claims.close()
        if self.context.tracing is not None:  # its last spans (a forked process skips atexit)
            self.context.tracing.close()
        reap_orphans(self.runner)
        log.info("worker %s: stopped", self.name)


def install_signal_handlers(pool, supervised=False):
    """SIGTERM/SIGINT ask for a graceful stop; a second one forces. Handlers only set flags.
    Under a supervisor, only SIGTERM counts (the supervisor passes every stop on as one; a
    terminal's Ctrl-C reaches the whole group and would count twice) and SIGHUP is the
    supervisor's."""
    def handler(signum, _frame):
        pool.request_stop(signal.Signals(signum).name)

    def retire(_signum, _frame):  # the supervisor's reload: acted on by the health loop
        pool.retire_requested = "the config was reloaded"
    signal.signal(signal.SIGTERM, handler)
    if supervised:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(RETIRE, retire)
    else:
        signal.signal(signal.SIGINT, handler)

