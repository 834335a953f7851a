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

from gearman_frame.envelope import parse_request
from gearman_frame.errors import EnvelopeError
from gearman_frame import __version__
from gearman_frame.envelope import dumps
from gearman_frame.queues import (CONTROL_CANCEL, CONTROL_INSPECT, CONTROL_RELOAD,
                                  CONTROL_SHUTDOWN,
                                  control_function, dead_letter_function,
                                  dead_letter_record, requeued_unique, requeues_of,
                                  result_record, results_function)
from gearman_frame.delays import epoch_of
from gearman_frame.wire import JobFailed, Submit, WireClient, WireWorker, submit_on

from .deadletters import DeadLetterSpool, SpoolSender, requeue_payload
from .hygiene import GroupLedger, Keeper, OrphanReaper, become_subreaper, reap_orphans
from .batches import BatchHandler
from .jobs import FunctionHandler, WorkerContext
from .stages import build as build_stages, encoded as encode_result
from .stats import Stats, resident_mib
from .supervisor import RETIRE, RETIRING, tell_supervisor
from .veryeasyprocess import Runner

log = logging.getLogger(__name__)

#: Seconds between two checks of thread health, task deadlines and recycling limits.
HEALTH_INTERVAL = 0.2
#: Seconds the threads get to close their connections once the pool is stopping.
JOIN_TIMEOUT = 5.0


def _gate(keyring):
    """The signature gate, when a key is configured (imported then only: it brings
    hashlib's OpenSSL, 3.7 MiB)."""
    if keyring is None:
        return None
    from .gate import Gate
    return Gate(keyring)


def _metrics(listen):
    """The Prometheus metrics of this process, when they are on (imported then only)."""
    if not listen:
        return None
    from .metrics import Metrics
    return Metrics()


def worker_name(template):
    """Fill ``{hostname}`` and ``{pid}`` in a worker-name template."""
    return template.format(hostname=socket.gethostname(), pid=os.getpid())


HOST = socket.gethostname()
#: What became of a dead letter or a result: queued by a server, or kept in a spool.
SENT, KEPT = "sent", "kept"

#: Suffix of the control connection's client id (``NAME.ctl``).
CONTROL_SUFFIX = "ctl"
#: Label prefix of a batch task's thread (``NAME.batch-FUNCTION``).
BATCH_PREFIX = "batch-"


class ServingThread(threading.Thread):
    """One worker thread: a WireWorker connected to every server, serving ``tasks``."""

    def __init__(self, pool, label, tasks, batch=None):
        super().__init__(name=f"{pool.name}.{label}", daemon=True)
        self.pool = pool
        self.label = label
        #: True once the watchdog took over its hung task: nobody waits for it any more
        self.abandoned = False
        settings = pool.config.worker
        if batch is None:
            self.wire = WireWorker(pool.servers, client_id=self.name,
                                   max_packet=settings.max_payload,
                                   dead_after=settings.dead_server_after)
        else:
            from gearman_frame.wire.batch import BatchWireWorker
            self.wire = BatchWireWorker(pool.servers, batch.max, batch.wait,
                                        client_id=self.name, max_packet=settings.max_payload,
                                        dead_after=settings.dead_server_after)
        for function, handler in tasks.items():
            self.wire.register_task(function, handler)

    def run(self):
        try:
            self.wire.work()
        except Exception:
            log.exception("worker thread %s died; the pool will restart it", self.name)

    def stop(self):
        self.wire.stop()

    @property
    def connected(self):
        return self.wire.any_connected()


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
        self.runner = Runner(on_start=started,
                             on_end=self.ledger.remove if self.ledger else None,
                             spool_dir=ledger_path)
        self.context = WorkerContext(name=self.name, runner=self.runner,
                                     stopping=self.stop_requested,
                                     dead_letter=self.dead_letter,
                                     publish=self.publish_result,
                                     notice=self.notice_start,
                                     progress_interval=config.worker.progress_interval,
                                     max_kwargs=config.worker.max_kwargs,
                                     max_payload=config.worker.max_payload,
                                     gate=_gate(config.keyring), stats=self.stats,
                                     on_job=self._count_job if config.worker.max_jobs
                                     else None)
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
        self.spool = DeadLetterSpool(spool_dir) if spool_dir else None
        self.spool_sender = SpoolSender(self.spool, self.servers) if self.spool else None
        #: Results no server took when their jobs ended wait here (beside dead letters).
        self.result_spool = (DeadLetterSpool(os.path.join(os.path.dirname(spool_dir),
                                                          "results")) if spool_dir else None)
        self.result_sender = (SpoolSender(self.result_spool, self.servers)
                              if self.result_spool else None)
        self.reaper = OrphanReaper(self.runner, ledger=self.ledger)
        self._local = threading.local()

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
        if request.reply_to:
            self.publish_result(job, request, result, time.time() - result.duration_s,
                                on_job_connection=False)
        if not result.ok and request.background:
            self.dead_letter(job, result)
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
        reap_orphans(self.runner)
        log.info("worker %s: stopped", self.name)

    # -- control and dead letters (called from worker threads)
    def control(self, wire_worker, job):
        """A control job: ``shutdown``, raw or as the first arg of an envelope; with a key
        configured, only a signed envelope (anything else is a log line and a refusal)."""
        command = self._control_command(job)
        if command is None:
            return JobFailed(b"refused: unauthenticated job")
        if command == CONTROL_SHUTDOWN:
            if self.supervised:  # the supervisor stops every process, this one included
                log.info("worker %s: shutdown job %s via %s: passed to the supervisor",
                         self.name, job.unique, job.function)
                tell_supervisor(signal.SIGTERM)
            else:
                self.request_stop(f"shutdown job {job.unique} via {job.function}")
            return b"ok: stopping"
        if command == CONTROL_INSPECT:
            return dumps(self.inspect())
        verb, _, argument = command.partition(b" ")
        if verb == CONTROL_CANCEL and argument.strip():
            return self.cancel(argument.strip().decode("utf-8", "replace"))
        if command == CONTROL_RELOAD and self.supervised:
            log.info("worker %s: reload job %s via %s: passed to the supervisor", self.name,
                     job.unique, job.function)
            tell_supervisor(signal.SIGHUP)
            return b"ok: reloading"
        return JobFailed(b"unknown control command: " + command[:100])

    def _control_command(self, job):
        data = bytes(job.data)
        try:
            request, _raw = parse_request(data)
        except EnvelopeError:
            request = None
        gate = self.context.gate
        why = gate.why_refused(job.function, request, data) if gate is not None else None
        if why is not None:
            log.warning("control job %s refused: %s", job.unique, why)
            return None
        if request is None:
            return data.strip()
        first = request.args[0] if request.args else ""
        return (first if isinstance(first, bytes) else str(first).encode()).strip()

    def inspect(self):
        """This process's live state: what `runadmin inspect` shows."""
        counters, durations = self.stats.snapshot()
        return {"worker": self.fleet_name, "process": self.name, "pid": os.getpid(),
                "host": HOST, "version": __version__, "config_hash": self.config_hash,
                "uptime_s": round(time.monotonic() - self.started, 1),
                "rss_mib": round(resident_mib(), 1), "threads": self.thread_count,
                "recycling": self.recycling, "running": self.stats.running(),
                "counters": counters, "durations_s": durations}

    @property
    def config_hash(self):
        """16 hex characters of a hash of the config file's bytes (which config runs)."""
        if getattr(self, "_config_hash", None) is None:
            try:
                with open(self.config.path, "rb") as handle:
                    data = handle.read()
            except (OSError, TypeError):
                data = b""
            from _blake2 import blake2b  # not hashlib: that loads OpenSSL (3.7 MiB)
            self._config_hash = blake2b(data, digest_size=8).hexdigest()
        return self._config_hash

    def dead_letter(self, job, result):
        """Send a background job that failed for good to ``__dead__.FUNCTION``, or keep
        the letter in the spool when no server takes it; False only if both failed (the
        caller then leaves the job unanswered for gearmand to hand out again)."""
        spec = self.config.functions.get(job.function)
        base, requeues = requeues_of(job.unique)
        if spec is not None and requeues < spec.max_requeues:
            return self._requeue(job, spec, base, requeues + 1)
        function = dead_letter_function(job.function)
        try:
            record = dead_letter_record(job.function, job.unique, job.data, result.to_dict(),
                                        requeues)
        except ValueError as err:  # cannot happen for a result that encoded; be safe
            log.error("could not encode the dead letter: %s", err)
            return False
        outcome = self._send(function, job.unique, record, self.spool, "the dead letter")
        if outcome is not None:
            self.stats.count(job.function, "dead_lettered")
        if outcome == SENT:
            log.warning("dead-lettered to %s", function)
        return outcome is not None

    def _requeue(self, job, spec, base, count):
        """beanstalkd's kick: send a job that failed for good back to its function after
        ``requeue_after`` (held by gearmand), as requeue ``count`` (in its unique)."""
        at = time.time() + spec.requeue_after
        payload = requeue_payload(job.data, at, self.config.keyring, job.function)
        outcome = self._send(job.function, requeued_unique(base, count), payload, self.spool,
                             "the requeued job", epoch=epoch_of(at))
        if outcome is not None:
            self.stats.count(job.function, "requeued")
            log.warning("failed for good: sent back to %s in %gs (requeue %d of %d)",
                        job.function, spec.requeue_after, count, spec.max_requeues)
        return outcome is not None

    def _encoded(self, function, record):
        """A record's JSON, signed for ``function`` when a key is configured."""
        keyring = self.config.keyring
        return dumps(record) if keyring is None else keyring.sign(function, record)

    def publish_result(self, job, request, result, started_at, on_job_connection=True):
        """Publish a job's final result to ``__results__.CHANNEL`` (signed when a key is
        set) on the job's connection (or, for a job whose own thread hangs, through this
        process's sender client), kept in the result spool if gearmand refuses it or the
        connection drops; False only if it cannot be encoded (the caller then leaves the
        job unanswered)."""
        function = results_function(request.reply_to)
        record = result_record(result, request, job.function, started_at, time.time())
        try:
            payload = self._encoded(function, record)
        except ValueError as err:
            log.error("could not encode the result: %s", err)
            return False
        unique = f"{request.id[:40]}.{os.urandom(4).hex()}"  # each run's result arrives
        if not on_job_connection:
            return self._send(function, unique, payload, self.result_spool,
                              "the result") is not None

        def keep(why):
            self._keep(self.result_spool, function, unique, payload, why, "the result")
        # on the job's own connection, just before its answer: gearmand queues the result
        # first, with no round trip; if it refuses it or the connection drops, it is kept
        submit_on(job, Submit(function, unique, payload, on_lost=keep))
        log.info("result published to %s", function)
        return True

    def notice_start(self, job, request):
        """Tell the job's channel that a command's run began (its runs are counted from
        these: a run whose worker died leaves its notice). Commands only: they are the
        long runs a worker's death can cut; a notice per no-op task would cost a quarter of
        a background task's throughput (one more job in gearmand each)."""
        function = results_function(request.reply_to)
        record = {"id": request.id, "event": "started", "worker": self.name, "host": HOST,
                  "started_at": time.time()}
        unique = f"{request.id[:40]}.s{os.urandom(4).hex()}"
        submit_on(job, Submit(function, unique, self._encoded(function, record),
                              on_lost=lambda why: log.info("start notice lost: %s", why)),
                  now=True)

    def _send(self, function, unique, record, spool, what, epoch=None):
        """Queue ``record`` on ``function`` (SENT; held until ``epoch`` if given), or
        keep it in ``spool`` to be sent once a server takes it (KEPT); None if neither
        could be done."""
        client = getattr(self._local, "client", None)
        try:
            if client is None:
                client = self._local.client = WireClient(self.servers)
            client.submit(function, record, unique=unique, background=True, timeout=10,
                          epoch=epoch)
            return SENT
        except Exception as err:  # refused (queue full), no server, EMFILE ...
            return self._keep(spool, function, unique, record, err, what, epoch)

    def _keep(self, spool, function, unique, record, why, what, epoch=None):
        if spool is None:
            log.error("could not send %s (%s) and no spool is configured", what, why)
            return None
        try:
            path = spool.keep(function, unique, record, epoch)
        except OSError as err:
            log.error("could not send %s (%s) nor spool it (%s)", what, why, err)
            return None
        log.warning("no server took %s (%s); kept in %s until one does", what, why, path)
        return KEPT


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

