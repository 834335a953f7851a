"""JobClient: send jobs to gearmand and get their results, never losing one.

``submit`` waits for a result (resending on timeout or lost connection, same unique key,
so gearmand runs it once); ``submit_background`` returns the job handle, or keeps the
job in the outbox when no server takes it; ``submit_many`` keeps many jobs in flight.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from gearman_frame import tasks
from gearman_frame.addresses import ServerAddress, parse_address
from gearman_frame.config import Config, load_config
from gearman_frame.delays import due_at
from gearman_frame.envelope import Result, dumps
from gearman_frame.errors import (ProtocolError, ServerRefused, ServerUnavailable, UsageError,
                                  WireError)
from gearman_frame.wire import status_by_unique

from gearman_frame.sending.dispatch import DEFAULT_WINDOW, Dispatcher, Job, Outcome
from .collect import Collector
from .answers import result_of
from .outbox import Kept, Outbox
from gearman_frame.sending.ledger_results import LedgerResults, open_results
from gearman_frame.sending.traced import begin_send, end_send
from gearman_frame.tracing import open_tracing
from gearman_frame.sending.result_store import ResultStore
from send_job_client.sent_log import SentLog

log = logging.getLogger(__name__)

OUTBOX = "outbox"
#: Jobs read from the outbox and sent at once by a flush.
FLUSH_BATCH = 500
#: Seconds an in-doubt job waits for the server that may hold it; past that, while that
#: server is still unreachable, it is sent to any server (it may then run twice if the
#: first server comes back with it queued).
DOUBT_PATIENCE = 600.0


@dataclass
class Delivery:
    """What became of a background job: queued (``handle``), kept in the outbox, or
    refused by the server (``error``)."""

    id: str
    handle: str | None = None
    outbox: bool = False
    error: str | None = None
    #: The server that queued it (``host:port``), when one did.
    server: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class FlushReport:
    delivered: int = 0
    remaining: int = 0
    #: True if another process was flushing the same outbox (this one sent nothing).
    busy: bool = False


class JobClient:
    """Sends jobs to the configured servers (see the module docstring)."""

    def __init__(self, config: Config | None = None, timeout: float | None = None,
                 resend: int | None = None, outbox: Outbox | None = None,
                 window: int = DEFAULT_WINDOW) -> None:
        self.config = config or load_config()
        client = self.config.client
        self.timeout = client.timeout if timeout is None else timeout
        self.outbox = outbox or Outbox(self.config.resolve(client.outbox))
        self.dispatcher = Dispatcher(self.config.servers, self.timeout,
                                     client.resend if resend is None else resend, window,
                                     signer=self.config.keyring)
        self._closed = False
        self._store: ResultStore | LedgerResults | None = None
        self._ledger_open: Any = None
        #: Background jobs recorded for the reaper (None: no ledger).
        self.sent = SentLog(self.ledger) if self.config.store.on else None
        #: A span per job sent, its context in the envelope (None: tracing is off).
        self.tracing = open_tracing(self.config, "sender")

    def ledger(self) -> Any:
        """The job ledger (store.url), opened on first use."""
        if self._ledger_open is None:
            from gearman_frame.ledger import open_ledger  # only a sender with a ledger
            store = self.config.store
            assert store.url is not None
            self._ledger_open = open_ledger(store.url, store.lease, store.dedup_ttl,
                                            store.result_ttl, 2)
        return self._ledger_open

    def close(self) -> None:
        if self.sent is not None:
            self.sent.flush()
        if self._ledger_open is not None:
            self._ledger_open.close()
        self.dispatcher.close()
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise UsageError("this JobClient is closed; make a new one")

    def __enter__(self) -> "JobClient":
        """Open: also the client that tasks' ``put``/``submit`` use in this context."""
        self._bound = tasks.using(self)
        self._bound.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._bound.__exit__(*exc)
        self.close()

    # -- one job
    def submit(self, function: str, *args: Any, priority: str = "normal",
               timeout: float | None = None, data: bytes | None = None,
               on_output: Callable[[int, bytes], Any] | None = None,
               on_progress: Callable[[int, int], Any] | None = None,
               idempotency_key: str | None = None, **kwargs: Any) -> Result:
        """Run a job in the foreground and return its Result (a failed command is a Result
        with status 'failed', not an exception). ``on_output(stream, chunk)`` follows a
        command's output while it runs (stream 1: stdout, 2: stderr; paced and bounded by
        the worker); ``on_progress(done, total)`` gets each progress report of the
        running job (a task's, or a command's ``progress:`` lines). With
        ``idempotency_key``, every job sent with that key (from any sender, within
        store.dedup_ttl) gets the outcome of one run. Raises JobTimeout,
        ServerUnavailable or ServerRefused when no result could be had."""
        job = Job(function, args, kwargs, data=data, priority=priority, on_output=on_output,
                  on_progress=on_progress, idempotency_key=idempotency_key)
        outcome = self._one(job, timeout)
        if outcome.error is not None:
            raise outcome.error
        return result_of(outcome)

    def submit_background(self, function: str, *args: Any, priority: str = "normal",
                          data: bytes | None = None, reply_to: str | None = None,
                          at: float | None = None, delay: float | None = None,
                          idempotency_key: str | None = None, **kwargs: Any) -> Delivery:
        """Queue a job; return its Delivery: the handle gearmand gave it and the server,
        or ``outbox=True`` if no server took it (it waits there for ``flush_outbox``).
        Its result is published to ``reply_to`` (default: ``client.results``), where
        :meth:`results` collects it. ``at`` (epoch seconds) or ``delay`` (seconds)
        holds it at gearmand until then (a past time runs now; more than a year ahead is
        ValueError). Raises ServerRefused if a server refused it."""
        job = Job(function, args, kwargs, data=data, priority=priority, background=True,
                  reply_to=reply_to or self.config.client.results,
                  at=due_at(at, delay), idempotency_key=idempotency_key)
        outcome = self._one(job, None)
        if isinstance(outcome.error, ServerRefused):
            raise outcome.error
        delivery = self._deliver(job, outcome)
        if self.sent is not None:
            self.sent.flush()
        return delivery

    def _one(self, job: Job, timeout: float | None) -> Outcome:
        self._check_open()
        job.validate()
        span = None if self.tracing is None else begin_send(self.tracing, job)
        outcomes = []
        self.dispatcher.run([job], lambda _i, outcome: outcomes.append(outcome), timeout,
                            eager=True)
        outcome = outcomes[0]
        if span is not None:  # a traced answer is decoded twice: only traced jobs pay
            end_send(self.tracing, span, outcome, None if job.background or outcome.error
                     else result_of(outcome))
        return outcome

    # -- workflows
    def put_workflow(self, flow: Any) -> str:
        """Start a workflow (``chain``, ``group``, ``chord`` or one ``f.s()``) and return
        its id: the workers carry it on (``sendjob status ID`` follows it). Needs the
        ledger (store.url); ValueError for a step that cannot run."""
        from .workflows import put_workflow  # only a workflow's sender loads it
        self._check_open()
        return put_workflow(self, flow)

    def submit_workflow(self, flow: Any, timeout: float | None = None) -> Result:
        """Start a workflow and wait for its end: its last step's Result (a last group's:
        ``value`` lists the members' outcomes), or the failed step's, whose ``error``
        names it. WorkflowTimeout after ``timeout`` seconds (None: no limit)."""
        from .workflows import wait_workflow
        return wait_workflow(self, self.put_workflow(flow), timeout)

    # -- many jobs
    def submit_many(self, jobs: Iterable[Job], background: bool = False,
                    progress: Callable[[int], Any] | None = None,
                    on_result: Callable[[Job, Any], Any] | None = None,
                    collect: bool = True,
                    timeout: float | None = None) -> list[Any] | None:
        """Send an iterable of Job objects (``background`` applies to all), many in flight.

        Returns, in the order of ``jobs``, a Result per foreground job or a Delivery per
        background job (with ``collect=False``, nothing: use ``on_result(job, outcome)``,
        which is called as each job ends, for batches too large to hold). ``progress(n)``
        is called with the count of jobs done so far.
        """
        self._check_open()
        results: dict[int, Any] = {}
        done = [0]
        spans: dict[int, Any] = {}  # id(job) -> its send span, when traced

        channel = self.config.client.results if background else None

        def prepared() -> Iterator[Job]:
            for job in jobs:
                job.background = background
                if channel and job.reply_to is None and job.data is None:
                    job.reply_to = channel
                job.validate()
                if self.tracing is not None:
                    spans[id(job)] = begin_send(self.tracing, job)
                yield job

        def finished(index: int, outcome: Outcome) -> None:
            value = self._deliver(outcome.job, outcome) if background else result_of(outcome)
            span = spans.pop(id(outcome.job), None) if spans else None
            if span is not None:
                end_send(self.tracing, span, outcome, None if background else value)
            if collect:
                results[index] = value
            done[0] += 1
            if on_result:
                on_result(outcome.job, value)
            if progress:
                progress(done[0])

        self.dispatcher.run(prepared(), finished, timeout)
        if self.sent is not None:
            self.sent.flush()
        return [results[i] for i in range(len(results))] if collect else None  # in order

    def _deliver(self, job: Job, outcome: Outcome) -> Delivery:
        if outcome.error is None:
            if self.sent is not None:
                self.sent.add(job, outcome.server)
            handle = outcome.request.handle if outcome.request is not None else None
            return Delivery(job.id, handle=handle, server=outcome.server)
        if isinstance(outcome.error, ServerRefused):
            return Delivery(job.id, error=str(outcome.error))
        self.outbox.put(job, outcome.error, doubt=in_doubt_at(outcome))
        log.warning("job %s on %s kept in the outbox %s: %s", job.id, job.function,
                    self.outbox.path, outcome.error)
        return Delivery(job.id, outbox=True)

    # -- results
    @property
    def result_store(self) -> ResultStore | LedgerResults:
        """The results: the job ledger's (store.url: from any host) and this host's own
        (client.result_store)."""
        if self._store is None:
            self._store = open_results(self.config,
                                       ledger=self.ledger() if self.sent is not None else None)
            assert self._store is not None
        return self._store

    def collect_results(self, channel: str | None = None, wait: float = 5.0) -> int:
        """Take what waits on the result channel (default ``client.results``) into the
        store, for at most ``wait`` seconds; return how many results were kept."""
        channel = channel or self.config.client.results
        if not channel:
            return 0
        collector = Collector(self.config.servers, channel, self.result_store,
                              self.config.keyring)
        return collector.run(deadline=time.monotonic() + wait)

    def results(self, channel: str | None = None, follow: bool = False,
                wait: float | None = 5.0) -> Iterator[Result]:
        """Yield each result that arrives on the channel (default ``client.results``),
        recorded in the store first; with ``follow``, until the generator is closed (or
        ``wait`` seconds, if given), else until the channel is drained (or ``wait``).
        Several consumers of one channel share its results: each goes to one of them."""
        channel = channel or self.config.client.results
        if not channel:
            raise UsageError("no result channel: set client.results or pass channel=")
        arrived: queue.Queue = queue.Queue()
        collector = Collector(self.config.servers, channel, self.result_store,
                              self.config.keyring, on_result=arrived.put)
        deadline = None if wait is None else time.monotonic() + wait
        thread = threading.Thread(target=collector.run, args=(deadline, follow), daemon=True)
        thread.start()
        try:
            while thread.is_alive() or not arrived.empty():
                try:
                    stored = arrived.get(timeout=0.1)
                except queue.Empty:
                    continue
                yield stored.result
        finally:
            collector.stop()
            thread.join(15)

    def record_result(self, function: str, args: Iterable[Any], kwargs: dict,
                      result: Result) -> None:
        """Keep a foreground result in the store (sendjob does, for ``sendjob result``)."""
        record = {**result.to_dict(), "function": function, "args": list(args),
                  "kwargs": kwargs, "ended_at": time.time()}
        self.result_store.add(dumps(record), f"{result.id}.foreground")

    # -- outbox
    def flush_outbox(self, wait: float = 0.0, budget: float | None = None,
                     any_server: bool = False) -> FlushReport:
        """Deliver waiting background jobs, oldest first, in batches; each is deleted only
        after gearmand queued it. One flusher at a time per outbox: if another process
        holds it for ``wait`` seconds, nothing is sent (``busy``). Stops at the first batch
        in which a job found no server, or once ``budget`` seconds have passed.
        ``any_server`` sends in-doubt jobs anywhere at once (see DOUBT_PATIENCE)."""
        self._check_open()
        deadline = time.monotonic() + wait
        while (lock := self.outbox.flush_lock()) is None:
            if time.monotonic() >= deadline:
                return FlushReport(remaining=len(self.outbox), busy=True)
            time.sleep(0.05)
        try:
            report = FlushReport()
            stop_at = None if budget is None else time.monotonic() + budget
            after = 0
            while True:
                rows = self.outbox.batch(after, FLUSH_BATCH)
                if not rows:
                    break
                after = rows[-1].seq
                delivered, failed = self._flush_batch(rows, any_server)
                report.delivered += delivered
                if failed:
                    break
                if stop_at is not None and time.monotonic() > stop_at:
                    break
            report.remaining = len(self.outbox)
            if self.sent is not None:
                self.sent.flush()
            return report
        finally:
            lock.release()

    def _flush_batch(self, rows: list[Kept], any_server: bool) -> tuple[int, int]:
        """Send one batch; returns (delivered, how many are still waiting)."""
        fresh: list = []
        doubtful: dict = {}
        patience_over = time.time() - DOUBT_PATIENCE
        for row in rows:
            if row.doubt and not (any_server or row.created < patience_over):
                doubtful.setdefault(row.doubt, []).append(row)
            else:
                fresh.append(row)
        delivered, waiting = 0, 0
        for server, kept in doubtful.items():
            sent, unsent = self._flush_in_doubt(server, kept)
            delivered += sent
            waiting += unsent
        sent, unsent = self._flush_rows(fresh, self.dispatcher)
        return delivered + sent, waiting + unsent

    def _flush_in_doubt(self, server: str, rows: list[Kept]) -> tuple[int, int]:
        """Jobs that ``server`` may hold: the ones it knows stay with it; the others are
        sent to it alone, so it coalesces a late copy instead of a second server running
        one. While it is unreachable they wait."""
        address = self._address(server)
        try:
            known = status_by_unique(address, [row.id for row in rows], self.timeout)
        except ProtocolError as err:  # no GET_STATUS_UNIQUE (the Perl job server)
            log.info("outbox: %s cannot say which of %d job(s) in doubt it holds (%s); they "
                     "go to it alone, and it merges a copy it still holds", server, len(rows),
                     err)
            known = {}
        except WireError as err:
            log.info("outbox: %d job(s) in doubt at %s wait for it: %s", len(rows), server,
                     err)
            return 0, len(rows)
        held = {row.id for row in rows if known.get(row.id) and known[row.id].known}
        self.outbox.delete(held)
        for job_id in held:
            log.info("outbox: job %s is queued at %s already; not sent again", job_id, server)
        pinned = Dispatcher([address], self.timeout, self.dispatcher.resend,
                            signer=self.dispatcher.signer)
        try:
            sent, unsent = self._flush_rows([r for r in rows if r.id not in held], pinned)
        finally:
            pinned.close()
        return len(held) + sent, unsent

    def _flush_rows(self, rows: list[Kept], dispatcher: Dispatcher) -> tuple[int, int]:
        jobs = [Job(r.function, data=r.data, priority=r.priority, background=True, id=r.id,
                    at=due_at(r.at) if r.at else None) for r in rows]
        if not jobs:
            return 0, 0
        outcomes = []
        dispatcher.run(jobs, lambda _i, outcome: outcomes.append(outcome))
        queued = [o for o in outcomes if o.error is None]
        self.outbox.delete(o.job.id for o in queued)
        if self.sent is not None:
            for outcome in queued:
                self.sent.add(outcome.job, outcome.server)
        for outcome in outcomes:
            if outcome.error is None:
                log.info("outbox: delivered job %s on %s as %s", outcome.job.id,
                         outcome.job.function,
                         outcome.request.handle if outcome.request else None)
            else:
                self.outbox.put(outcome.job, outcome.error, doubt=in_doubt_at(outcome))
                log.warning("outbox: job %s on %s still undeliverable: %s", outcome.job.id,
                            outcome.job.function, outcome.error)
        return len(queued), len(outcomes) - len(queued)

    def _address(self, server: str) -> ServerAddress:
        for address in self.config.servers:
            if str(address) == server:
                return address
        return parse_address(server)


def in_doubt_at(outcome: Outcome) -> str | None:
    """The server that may have queued a job no server acknowledged: the last one whose
    live connection took the request and never answered (None if there is none)."""
    for server, what in reversed(outcome.attempts or ()):
        if what.startswith("timed out"):
            return server
    return None


__all__ = ["JobClient", "Job", "Delivery", "Result", "ServerUnavailable", "OUTBOX"]
