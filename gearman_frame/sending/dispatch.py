"""Keeps many jobs in flight across servers and resends them without loss or duplicates.

Each job is one request at a time, pinned to one server. When its attempt times out on a
live connection, the same request (same unique key) is sent again on that connection, so
gearmand coalesces it with the queued or running original and the command runs once.
When the connection is lost or the server is unreachable, the job moves to the next
server. After ``resend`` resends a foreground job fails with JobTimeout naming every
server tried and what each answered; a background job goes back to the caller, who keeps
it in the outbox.
"""
from __future__ import annotations

import collections
import logging
import time
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from ..delays import epoch_of
from ..envelope import Request, check_faithful, new_job_id
from ..errors import JobTimeout, ServerUnavailable, WireError
from ..retry import RetryPolicy
from ..wire import (JOB_COMPLETE, JOB_CREATED, JOB_FAILED, JOB_REFUSED, JOB_UNKNOWN, PRIORITIES,
                   WireClient, check_request)

if TYPE_CHECKING:
    from ..signing import Keyring
    from ..wire.client import Request as WireRequest
    from ..wire.connection import ServerLike

log = logging.getLogger(__name__)

#: Jobs kept in flight at once by submit_many (bounds memory for any batch size).
DEFAULT_WINDOW = 1000
#: Seconds a server that refused connections is skipped before it is tried again.
SERVER_RETRY_DELAY = 1.0
#: Longest wait (seconds) of one poll of the connections.
POLL_SLICE = 0.05
#: Wait before a job's next attempt: 0.1 s after the first, doubling, at most 1 s.
RESEND_BACKOFF = RetryPolicy(delay=0.1, backoff=2.0, max_delay=1.0)
#: Freed window slots are refilled once 1/REFILL_FRACTION of the window is free; a batch's
#: first pass sends that many, so its first jobs run while the rest are encoded.
REFILL_FRACTION = 8


@dataclass
class Job:
    """One job to send: a function and its args/kwargs (or a raw payload)."""

    function: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    data: bytes | None = None
    background: bool = False
    priority: str = "normal"
    id: str = field(default_factory=new_job_id)
    #: The result channel (the worker publishes the result to ``__results__.CHANNEL``).
    reply_to: str | None = None
    #: on_output(stream, bytes) for each piece of output the worker streams while the
    #: job runs (stream 1: stdout, 2: stderr); set, the job asks the worker to stream.
    on_output: Any = field(default=None, compare=False, repr=False)
    #: on_progress(done, total) for each progress report (WORK_STATUS) of the running job.
    on_progress: Any = field(default=None, compare=False, repr=False)
    #: Epoch seconds before which the job must not start (a background job; None: now).
    at: float | None = None
    #: Pick the first server by hashing this key (every sender picks the same one, so
    #: gearmand merges copies of a job with the same unique); None: in turn.
    server_key: str | None = None
    #: Every job sent with this key, from any sender, gets the outcome of one run (with
    #: the ledger on): its id derives from the key, and so does its first server.
    idempotency_key: str | None = field(default=None, compare=False)
    #: The sender's trace context (``traceparent``, ``tracestate``) it carries, if traced.
    trace: dict | None = field(default=None, compare=False, repr=False)
    #: A workflow's first-stage step: its ``wf`` field (see gearman_frame.workflows).
    wf: dict | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.idempotency_key is not None:
            from ..ledger import key_job_id  # here: only a keyed job needs hashlib
            if not isinstance(self.idempotency_key, str) or not self.idempotency_key:
                raise ValueError("idempotency_key must be a non-empty string")
            self.id = key_job_id(self.idempotency_key)
            self.server_key = self.server_key or self.id

    @classmethod
    def of(cls, function: str, *args: Any, **kwargs: Any) -> "Job":
        """``Job.of("compress", path="/x")``: the short way to build one."""
        return cls(function, args, kwargs)

    def payload(self, signer: Keyring | None = None) -> bytes:
        """The bytes to send; with a Keyring ``signer``, an envelope is signed (a raw
        payload holding one, as the outbox and a resent dump do, is signed anew)."""
        if self.data is not None:
            return self.data if signer is None else signer.resign(self.function, self.data)
        trace = self.trace or {}
        return Request(self.args, self.kwargs, id=self.id, background=self.background,
                       reply_to=self.reply_to, follow=self.on_output is not None,
                       at=self.at, traceparent=trace.get("traceparent"),
                       tracestate=trace.get("tracestate"),
                       wf=self.wf).encode(signer, self.function)

    def validate(self) -> None:
        if self.priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, "
                             f"got {self.priority!r}")
        check_request(self.function, self.id)
        if self.at is not None and not self.background:
            raise ValueError(f"job {self.id}: only a background job can be delayed")
        if self.data is None:
            check_faithful(self.kwargs)
            check_faithful(self.args, "args")


@dataclass
class Outcome:
    """How one job ended: the request (with result/handle) or an error."""

    job: Job
    request: WireRequest | None = None
    error: Exception | None = None
    server: str | None = None
    attempts: list = field(default_factory=list)


class _Flight:
    """One job on its way. ``request`` is its latest attempt; earlier attempts on live
    connections stay in flight too, since gearmand may answer any of them."""

    __slots__ = ("index", "job", "payload", "server", "request", "sent_at", "not_before",
                 "history", "done", "attempts")

    def __init__(self, index: int, job: Job, server: int, signer: Keyring | None = None,
                 ) -> None:
        self.index, self.job, self.server = index, job, server
        self.payload = job.payload(signer)
        self.request: WireRequest | None = None
        self.sent_at, self.not_before = 0.0, 0.0
        self.history: list[tuple[str, str]] = []
        self.done = False
        self.attempts: list = []  # every request sent for it (earlier ones may still be in flight)


#: ``on_done(index, outcome)``: a job of the batch ended.
OnDone = Callable[[int, "Outcome"], None]
#: The attempts in flight (request -> its job's flight), and the flights waiting to be
#: sent (a resend's backoff, or room in the window).
Flying = dict
Waiting = collections.deque

class Dispatcher:
    """Sends jobs through one WireClient (a connection per server) and tracks them."""

    def __init__(self, servers: Iterable[ServerLike], timeout: float, resend: int,
                 window: int = DEFAULT_WINDOW, signer: Keyring | None = None) -> None:
        self.servers = list(servers)
        #: The Keyring that signs every envelope sent (None: unsigned).
        self.signer = signer
        self.wire = WireClient(self.servers)
        self.timeout = timeout
        self.resend = resend
        self.window = window
        self._down_until = [0.0] * len(self.servers)
        self._eager = False
        self._next_server = 0
        self._deadlines: collections.OrderedDict = collections.OrderedDict()
        self._ended: list = []
        self._per_try = timeout

    def close(self) -> None:
        self.wire.close()

    # -- the loop
    def run(self, jobs: Iterable[Job], on_done: OnDone, timeout: float | None = None,
            eager: bool = False) -> None:
        """Send every job of the iterable ``jobs``; call ``on_done(index, Outcome)`` as
        each ends. At most ``window`` jobs are in flight. ``eager`` writes each request at
        once (one job: lower latency) instead of batching writes (many jobs).

        Each pass looks only at the requests whose state changed (the wire client lists
        them) and at those whose time is up: each attempt's deadline goes in a queue in
        the order they were sent (every attempt gets the same time), so no pass reads
        every request in flight. Freed slots are refilled in batches of ``refill`` jobs,
        so requests go out many to a write. A batch starts with one such refill: its first
        jobs run while the rest are encoded (a signed job takes twice as long to encode)."""
        self._eager = eager
        self._run(iter(enumerate(jobs)), on_done, self.timeout if timeout is None else timeout)

    def _run(self, source: Iterator[tuple[int, Job]], on_done: OnDone, per_try: float) -> None:
        waiting: collections.deque = collections.deque()
        flying: dict = {}
        # request -> its deadline, in the order sent (every attempt gets the same time, so
        # also in deadline order); a request leaves it when it leaves ``flying``
        deadlines: collections.OrderedDict = collections.OrderedDict()
        self._deadlines = deadlines
        self._per_try = per_try
        self._ended = []  # flights that ended since the last pass
        exhausted = False
        refill = max(1, self.window // REFILL_FRACTION)
        while True:
            room = self.window - len(waiting) - len(flying)
            if not exhausted and (room >= refill or not flying):
                # nothing in flight (a batch starts): one refill first, so gearmand hands
                # the first jobs out while the rest are encoded
                for _ in range(room if flying or waiting else min(room, refill)):
                    try:
                        index, job = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    waiting.append(_Flight(index, job, self._pick_server(job.server_key),
                                                  self.signer))
            if waiting:
                self._send_waiting(waiting, flying, on_done)
            self._drop_ended(flying)
            if exhausted and not waiting and not flying:
                return
            pause = POLL_SLICE if waiting or self.wire.any_connected() else 0
            for request in self.wire.poll(pause):
                flight = flying.get(request)
                if flight is not None:
                    if request.warning_updates and flight.job.on_output is not None:
                        self._stream(flight, request)
                    if request.progressed and flight.job.on_progress is not None:
                        request.progressed = False
                        flight.job.on_progress(request.status["numerator"],
                                               request.status["denominator"])
                    self._settle(request, flight, flying, waiting, on_done)
            now = time.monotonic()
            while deadlines:
                request, deadline = next(iter(deadlines.items()))
                if deadline > now:
                    break
                del deadlines[request]
                flight = flying.get(request)
                if flight is not None and not self._settle(request, flight, flying, waiting,
                                                           on_done):
                    self._check_timeout(request, flight, waiting, on_done, per_try)

    @staticmethod
    def _stream(flight: _Flight, request: WireRequest) -> None:
        """Hand the output a worker streamed (WORK_WARNING: ``1``/``2`` then the bytes of
        stdout/stderr) to the job's ``on_output``; another client's warning (no such
        mark) goes as stderr."""
        chunks, request.warning_updates = request.warning_updates, []
        for chunk in chunks:
            chunk = bytes(chunk)
            if chunk[:1] in (b"1", b"2"):
                flight.job.on_output(int(chunk[:1]), chunk[1:])
            else:
                flight.job.on_output(2, chunk)

    def _drop_ended(self, flying: Flying) -> None:
        """Forget the attempts still in flight of the jobs that ended: no answer to them
        is needed any more."""
        for flight in self._ended:
            for request in flight.attempts:
                if flying.pop(request, None) is not None:
                    self._forget(request)
        self._ended.clear()

    def _send_waiting(self, waiting: Waiting, flying: Flying, on_done: OnDone) -> None:
        now = time.monotonic()
        for _ in range(len(waiting)):
            flight = waiting.popleft()
            if flight.done:  # an earlier attempt was answered meanwhile
                continue
            if flight.not_before > now:
                waiting.append(flight)
            elif not self._send(flight, flying, now):
                self._retry_or_end(flight, waiting, on_done, move=True)

    def _settle(self, request: WireRequest, flight: _Flight, flying: Flying,
                waiting: Waiting, on_done: OnDone) -> bool:
        """Act on an attempt that was answered or lost; True if it left ``flying``."""
        state = request.state
        answered = (state in (JOB_COMPLETE, JOB_FAILED, JOB_REFUSED)
                    or (flight.job.background and state == JOB_CREATED))
        if not (flight.done or answered or state == JOB_UNKNOWN):
            return False
        del flying[request]
        self._forget(request)
        if flight.done:
            return True
        if answered:
            flight.done = True
            self._ended.append(flight)
            error = request.server_error if state == JOB_REFUSED else None
            on_done(flight.index, Outcome(flight.job, request, error,
                                          str(self.servers[flight.server]), flight.history))
        elif request is flight.request:  # the latest attempt's connection was lost
            flight.history.append((str(self.servers[flight.server]), "connection lost"))
            self._retry_or_end(flight, waiting, on_done, move=True)
        return True

    def _check_timeout(self, request: WireRequest, flight: _Flight, waiting: Waiting,
                       on_done: OnDone, per_try: float) -> None:
        """``request`` is past its deadline: resend its job, unless a newer attempt
        replaced it or a resend is already scheduled."""
        if request is flight.request and flight.not_before <= flight.sent_at:
            # The earlier attempt stays in flight: the resend (same unique, same live
            # connection) coalesces with it, and whichever is answered ends the job.
            if request.connected and self.wire.unacknowledged(flight.server) > 0:
                # The server has not even received it (its TCP has not acknowledged our
                # bytes: the link is down). A copy on this connection would queue behind
                # it and, once the link is back, arrive after the original ran and run it
                # again; so the connection is dropped, its unsent bytes with it (a reset),
                # and its jobs go to the next server as on any lost connection.
                log.warning("gearmand %s has not received what was sent %gs ago (the link "
                            "may be down): dropping the connection, its jobs go to the "
                            "next server", self.servers[flight.server], per_try)
                self.wire.abort(flight.server)
                self._down_until[flight.server] = time.monotonic() + SERVER_RETRY_DELAY
                return
            queued = "queued" if request.handle else "not queued"
            flight.history.append((str(self.servers[flight.server]),
                                   f"timed out after {per_try:g}s ({queued})"))
            self._retry_or_end(flight, waiting, on_done, move=not request.connected)

    # -- sending
    def _pick_server(self, key: str | None = None) -> int:
        if key is not None:  # the same server for every sender (crc32: not salted)
            return zlib.crc32(key.encode("utf-8", "surrogateescape")) % len(self.servers)
        index = self._next_server
        self._next_server = (index + 1) % len(self.servers)
        return index

    def _send(self, flight: _Flight, flying: Flying, now: float) -> bool:
        if not self.wire.is_connected(flight.server) and self._down_until[flight.server] > now:
            flight.history.append((str(self.servers[flight.server]), "unreachable (skipped)"))
            return False
        job = flight.job
        try:
            request = self.wire.send(flight.server, job.function, flight.payload, job.id,
                                     job.priority, job.background, flush=self._eager,
                                     epoch=None if job.at is None else epoch_of(job.at))
        except ServerUnavailable as err:
            self._down_until[flight.server] = now + SERVER_RETRY_DELAY
            reason = str(err).split(": ", 1)[-1]
            flight.history.append((str(self.servers[flight.server]), f"unreachable: {reason}"))
            return False
        flight.request, flight.sent_at = request, now
        flight.attempts.append(request)
        flying[request] = flight
        self._deadlines[request] = now + self._per_try
        return True

    def _retry_or_end(self, flight: _Flight, waiting: Waiting, on_done: OnDone,
                      move: bool) -> None:
        if len(flight.history) > self.resend:
            flight.done = True
            self._ended.append(flight)
            on_done(flight.index, Outcome(flight.job, flight.request,
                                          self._give_up(flight), attempts=flight.history))
            return
        if move:
            flight.server = (flight.server + 1) % len(self.servers)
        flight.not_before = time.monotonic() + RESEND_BACKOFF.delay_after(len(flight.history))
        log.info("job %s on %s: resending (%d of %d) to %s", flight.job.id,
                 flight.job.function, len(flight.history), self.resend,
                 self.servers[flight.server])
        waiting.append(flight)

    def _give_up(self, flight: _Flight) -> WireError:
        if all(what.startswith("unreachable") for _server, what in flight.history):
            return ServerUnavailable(
                f"no job server reachable for job {flight.job.id} on '{flight.job.function}': "
                + "; ".join(f"{s}: {w}" for s, w in flight.history), self.servers)
        return JobTimeout(flight.job.function, flight.job.id, flight.history)

    def _forget(self, request: WireRequest) -> None:
        """Drop the library's bookkeeping for a finished request (no leak over 100k jobs)."""
        self._deadlines.pop(request, None)
        self.wire.forget(request)

