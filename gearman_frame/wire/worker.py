"""The worker side of the port: one connection per server, one job at a time.

The serving loop polls its connections, handles what came (NOOP, NO_JOB, JOB_CREATED,
ERROR, a job assigned), and only then runs the job it was assigned, outside of any packet
handling; then it answers and asks for the next. It never sends WORK_EXCEPTION, survives
callbacks that raise or return the wrong type, reconnects with capped backoff when a
server goes away, and grabs its next job without a PRE_SLEEP/NOOP round trip when it has
one server. Only one connection at a time holds the job lock (has a grab out).
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Callable, Iterable

from ..errors import ConnectionLost
from ..retry import RetryPolicy
from . import packets as p
from .answers import REFUSED, JobAnswers
from .capped import CappedAbilities
from .assignment import Job, Submit
from .connection import Connection, Poller, ServerLike
from .refusals import refused_command

log = logging.getLogger(__name__)

#: First and largest wait (seconds) between reconnect attempts to a lost server.
RECONNECT_MIN = 0.1
RECONNECT_MAX = 5.0
#: Waits between reconnect attempts: RECONNECT_MIN, doubling, at most RECONNECT_MAX.
RECONNECT_BACKOFF = RetryPolicy(delay=RECONNECT_MIN, backoff=2.0, max_delay=RECONNECT_MAX)
#: Seconds a worker's poll waits before checking whether it was asked to stop.
WORKER_POLL_INTERVAL = 0.25
#: Seconds a grab may wait unreceived (unacknowledged by the server's TCP) before its
#: connection is dropped so that the other servers are served.
STUCK_GRAB = 2.0
#: Seconds a worker's TCP connect to a server may take (one round trip; a TLS handshake
#: gets CONNECT_TIMEOUT): the thread's loop, serving the other servers too, waits on it,
#: so a server whose host vanished must not hold it long.
WORKER_CONNECT_TIMEOUT = 0.5
#: Seconds an idle worker waits before asking a server for a job again without a NOOP:
#: gearmand (1.1.20) does not wake sleeping workers when a delayed job comes due.
DUE_POLL = 1.0


class _Link:
    """One connection's worker state (made anew on each connect)."""

    __slots__ = ("conn", "submits", "grab_sent", "grab_ahead", "before_grab", "woken",
                 "idle", "grab_ok")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        #: Submits sent on this connection, oldest first, waiting for JOB_CREATED.
        self.submits: collections.deque = collections.deque()
        self.grab_sent = p.GRAB_JOB_UNIQ  # the grab last sent, to know what an ERROR refused
        #: A grab sent ahead of submits is unanswered; its answer comes after those of the
        #: ``before_grab`` oldest submits (sent before it) and before the others'.
        self.grab_ahead, self.before_grab = False, 0
        #: NOOP seen since connecting; NO_JOB (or nothing to wake for) since the last job.
        self.woken, self.idle = False, False
        #: The server answered a grab of ours (with a job or NO_JOB, not an ERROR): grabs
        #: may be sent several at once (a batch worker gathering).
        self.grab_ok = False

    def queue_submit(self, submit: Submit) -> None:
        self.conn.queue(p.SUBMIT_JOB_BG, submit.function, submit.unique, submit.data)
        self.submits.append(submit)

    def lost(self) -> None:
        self.grab_ahead, self.before_grab = False, 0
        while self.submits:
            self.submits.popleft().lost("the connection to gearmand was lost")


class WireWorker(CappedAbilities, JobAnswers):
    """One worker connection set (one per thread): survives errors, reconnects, stops.

    ``register_task(name, callback)``: ``callback(worker, job)`` returns the answer (bytes
    or str), or JobFailed, or raises AbandonJob."""

    def __init__(self, servers: Iterable[ServerLike], client_id: str | None = None,
                 max_packet: int | None = None, dead_after: float | None = None,
                 watch_idle: bool = False) -> None:
        self.connections = [Connection(s, dead_after=dead_after, max_packet=max_packet)
                            for s in servers]
        for conn in self.connections:  # a TLS handshake keeps CONNECT_TIMEOUT
            if conn.address.tls_client is None:
                conn.connect_timeout = WORKER_CONNECT_TIMEOUT
        self.client_id = client_id
        self.abilities: dict = {}
        #: ``watch_idle``: ask each server for an ECHO on connect, so ``drained()`` knows
        #: when a server had nothing for it.
        self.watch_idle = watch_idle
        self._links: dict[Connection, _Link] = {}
        self._holder: _Link | None = None  # the link holding the job lock
        self._assigned: Job | None = None
        self._poller = Poller()
        self._stopping = threading.Event()
        self._retry_at: dict = {}
        self._skip_direct, self._skip_next, self._direct_pending = 0, 1, False
        self._quiet_since, self._wake_turn = time.monotonic(), 0
        self.grab_sent_at = time.monotonic()
        self.busy = False
        #: The job whose callback runs, until its answer is queued (by this thread, or by
        #: another through answer_taken while the callback hangs).
        self._unanswered: object = None
        self._answer_lock = threading.Lock()

    # -- what it serves
    def register_task(self, task: str, callback: Callable) -> str:
        self.abilities[task] = callback
        if task not in self._withheld:
            for link in self._links.values():
                link.conn.queue(p.CAN_DO, task)
        return task

    def unregister_task(self, task: str) -> str:
        self.abilities.pop(task, None)
        for link in self._links.values():
            self._announce(link)
        return task

    def _announce(self, link: _Link) -> None:
        conn = link.conn
        conn.queue(p.RESET_ABILITIES)
        for task in self.announced():
            conn.queue(p.CAN_DO, task)

    @property
    def job_in_hand(self) -> Job | None:
        """The job whose callback runs now (None if none, or if it was taken over)."""
        job = self._unanswered
        return job if isinstance(job, Job) else None

    def any_connected(self) -> bool:
        return any(c.sock is not None for c in self.connections)

    def drained(self) -> bool:
        """True once every connected server said it has nothing (NO_JOB, or an ECHO before
        any NOOP with ``watch_idle``) since the last job, and no job runs."""
        live = [link for c, link in self._links.items() if c.sock is not None]
        return bool(live) and all(link.idle for link in live) and not self.busy

    # -- life cycle
    def stop(self) -> None:
        """Stop taking jobs; work() returns after the job in hand (if any) is answered."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def work(self, poll_timeout: float | None = WORKER_POLL_INTERVAL) -> None:
        """Serve jobs until stop(); never exits because servers are down."""
        try:
            while not self.stopping:
                live = self.connect_due()
                if not live:
                    self._stopping.wait(self._seconds_to_next_try())
                    continue
                readable, writable, failed = self._poller.poll(live, poll_timeout)
                self._handle(live, readable, failed)
                job, self._assigned = self._assigned, None
                if job is not None:
                    self.serve_job(job)
                self._write_now(live)
                self._after_poll(live, bool(readable))
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        for conn in self.connections:
            self._drop(conn)
        self._holder = None

    def connect_due(self) -> list[Connection]:
        """Return the live connections, reconnecting those whose backoff has passed."""
        now, live = time.monotonic(), []
        for conn in self.connections:
            if conn.sock is not None:
                live.append(conn)
                continue
            if conn in self._links:  # failed outside the loop (a write from another thread)
                self.handle_error(conn)
            due, failures = self._retry_at.get(conn, (0.0, 0))
            if now < due:
                continue
            try:
                self._connect(conn)
            except ConnectionLost as err:
                if not failures:
                    log.warning("gearmand %s unreachable, retrying with backoff: %s",
                                conn.address, err)
                failures += 1
                self._retry_at[conn] = (now + RECONNECT_BACKOFF.delay_after(failures),
                                        failures)
                continue
            if conn in self._retry_at:
                log.info("gearmand %s: reconnected", conn.address)
            self._retry_at.pop(conn, None)
            live.append(conn)
        return live

    def _connect(self, conn: Connection) -> None:
        conn.connect()
        link = self._links[conn] = _Link(conn)
        if self.client_id:
            conn.queue(p.SET_CLIENT_ID, self.client_id)
        self._announce(link)
        conn.queue(p.PRE_SLEEP)
        if self.watch_idle:
            conn.queue(p.ECHO_REQ)  # its answer before any NOOP: nothing waits here

    def _seconds_to_next_try(self) -> float:
        now = time.monotonic()
        waits = [due - now for due, _ in self._retry_at.values()]
        return max(0.01, min(waits, default=RECONNECT_MIN))

    def handle_error(self, conn: Connection) -> None:
        """``conn`` failed: close it (its job lock and submits go), reconnect later."""
        if conn.sock is not None or conn in self._links:
            log.warning("gearmand %s: connection lost", conn.address)
        self._retry_at.setdefault(conn, (time.monotonic(), 0))
        self._drop(conn)

    def _drop(self, conn: Connection) -> None:
        link = self._links.pop(conn, None)
        conn.close()
        if link is not None:
            if self._holder is link:
                self._holder = None
            link.lost()

    # -- packets
    def _handle(self, live: list[Connection], readable: set[Connection],
                failed: set[Connection]) -> None:
        for conn in live:
            if conn in failed:
                self.handle_error(conn)
            elif conn in readable:
                try:
                    link = self._links[conn]
                    for cmd, fields in conn.read():
                        self._on_packet(link, cmd, fields)
                except ConnectionLost as err:
                    log.debug("gearmand %s: %s", conn.address, err)
                    self.handle_error(conn)

    def _on_packet(self, link: _Link, cmd: int, fields: tuple) -> None:
        if cmd == p.NOOP:
            link.woken, link.idle = True, False
            self._wake(link)
        elif cmd == p.NO_JOB:
            link.grab_ahead, link.idle, link.grab_ok = False, True, True
            self.note_grab(empty=True)
            self._grab_answered(link)
            self.on_no_job(link)
        elif cmd in p.JOB_ASSIGNS:
            handle, function, unique, data = (fields if cmd == p.JOB_ASSIGN_UNIQ
                                              else (fields[0], fields[1], None, fields[2]))
            link.grab_ahead = False
            for other in self._links.values():  # a job came: look at every server again
                other.idle = False
            self.note_grab(empty=False)
            if self._holder is not link:
                raise link.conn.fail("protocol error: a job we did not ask for")
            link.grab_ok = True
            self._grab_answered(link)
            self.on_assign(link, Job(link, handle, function, unique or None, data))
        elif cmd == p.JOB_CREATED:
            if link.submits:
                link.submits.popleft()
                link.before_grab = max(0, link.before_grab - 1)
        elif cmd == p.ECHO_RES:
            link.idle = link.idle or not link.woken
        elif cmd == p.ERROR:
            self._on_error(link, *fields)

    def on_no_job(self, link: _Link) -> None:
        """The server has nothing: give the job lock up and sleep until it says NOOP."""
        self._release(link)
        link.conn.queue(p.PRE_SLEEP)

    def _grab_answered(self, link: _Link) -> None:
        """A grab of ours was answered (a job, NO_JOB, or refused)."""

    def on_assign(self, link: _Link, job: Job) -> None:
        """A job came: it runs once the packets in hand are handled."""
        self._assigned = job

    def _wake(self, link: _Link) -> None:
        """NOOP: grab a job if no other connection has a grab out, else sleep again."""
        if self._holder is link:
            return
        if self._holder is None:
            self._holder = link
            self._grab(link)
        else:
            link.conn.queue(p.PRE_SLEEP)

    def _grab(self, link: _Link, ahead: bool = False) -> None:
        link.grab_ahead, link.before_grab = ahead, len(link.submits) if ahead else 0
        self.grab_sent_at = time.monotonic()
        old = REFUSED.has(link.conn.address, "GRAB_JOB_UNIQ")
        link.grab_sent = p.GRAB_JOB if old else p.GRAB_JOB_UNIQ
        link.conn.queue(link.grab_sent)

    def _release(self, link: _Link) -> None:
        if self._holder is link:
            self._holder = None

    def _on_error(self, link: _Link, code: str, text: str) -> None:
        """An ERROR never leaves this connection holding the job lock: a refused
        GRAB_JOB_UNIQ is asked again as GRAB_JOB (remembered for the server); a refused
        WORK_DATA is remembered (failure details then go as WORK_EXCEPTION, which such a
        server relays only to clients that asked for exceptions, before the WORK_FAIL)."""
        address = link.conn.address
        if link.submits and (not link.grab_ahead or link.before_grab):  # in order sent
            link.before_grab = max(0, link.before_grab - 1)
            link.submits.popleft().lost(f"gearmand {address} refused it: {code}: {text}")
            return
        link.grab_ahead = False
        refused = refused_command(text)
        if refused in ("work_data", "work_warning"):
            REFUSED.note(address, "WORK_DATA", "failure details go as WORK_EXCEPTION")
            return
        if self._holder is link and refused in ("", "grab_job_uniq", "grab_job"):
            self._grab_answered(link)
            if link.grab_sent == p.GRAB_JOB_UNIQ:
                REFUSED.note(address, "GRAB_JOB_UNIQ",
                             "grabbing with GRAB_JOB (raw jobs get the handle as job id)")
                # a server that old has no WORK_DATA either (the Perl job server)
                REFUSED.note(address, "WORK_DATA", "failure details go as WORK_EXCEPTION")
                self._grab(link)
                return
            log.error("gearmand %s refused a grab: %s: %s", address, code, text)
            self._release(link)
            link.conn.queue(p.PRE_SLEEP)
            return
        log.error("gearmand %s sent ERROR %s: %s", address, code, text)

    # -- after each poll
    def _after_poll(self, live: list[Connection], active: bool) -> None:
        """Called after every poll of the connections (``active``: some were readable)."""
        now = time.monotonic()
        self._drop_stuck_grab(now)
        # never while a grab is out: gearmand requeues a job it assigned to a worker that
        # then resets its abilities (the job would run twice)
        if self._holder is None and self.refresh_caps(now) and live:
            self._wake(self._links[live[0]])  # a capped function may be taken: ask now
            self._write_now(live[:1])
        self._wake_if_quiet(live, active, now)

    def _drop_stuck_grab(self, now: float) -> None:
        """A grab the server has not even received (its TCP has not acknowledged it: the
        link is down) holds the job lock, so no other server's job is taken: after
        STUCK_GRAB seconds the connection is dropped (a reset: the grab is never
        delivered later) and made again with backoff, and the other servers are served."""
        holder = self._holder
        if holder is None or now - self.grab_sent_at < STUCK_GRAB:
            return
        conn = holder.conn
        if conn.sock is None or conn.unacknowledged() <= 0:
            return
        log.warning("gearmand %s has not received a grab sent %.1fs ago (the link may be "
                    "down): dropping the connection; the other servers are served",
                    conn.address, now - self.grab_sent_at)
        conn.abort()
        self.handle_error(conn)

    def _wake_if_quiet(self, live: list[Connection], active: bool, now: float) -> None:
        """After DUE_POLL quiet seconds, ask one server (in turn) for a job as if it had
        sent NOOP, so a delayed job that came due is taken within about a second."""
        if active:
            self._quiet_since = now
            return
        if now - self._quiet_since < DUE_POLL or self._holder is not None:
            return
        self._quiet_since = now
        conn = live[self._wake_turn % len(live)]
        self._wake_turn += 1
        link = self._links.get(conn)
        if link is not None and conn.sock is not None:
            self._wake(link)
            self._write_now([conn])

    def _write_now(self, connections: Iterable[Connection]) -> None:
        """Send what handling queued (a grab after a NOOP, an answer) without polling for
        it first: the socket almost always takes it."""
        for conn in connections:
            if conn.sock is not None and conn.out:
                try:
                    conn.flush()
                except ConnectionLost:
                    self.handle_error(conn)

    # -- grabbing straight after a job
    def grab_directly(self) -> bool:
        """Ask for the next job right after one is done (saving the PRE_SLEEP/NOOP round
        trip) while that keeps finding jobs; after it finds none, skip it for 1, 2, 4 ...
        up to 64 jobs, so an idle-ish worker does not pay a wasted round trip per job."""
        if self.stopping or len(self.connections) != 1:
            return False
        if self._skip_direct > 0:
            self._skip_direct -= 1
            return False
        self._direct_pending = True
        return True

    def note_grab(self, empty: bool) -> None:
        if self._direct_pending:
            self._direct_pending = False
            if empty:
                self._skip_direct = self._skip_next
                self._skip_next = min(64, self._skip_next * 2)
            else:
                self._skip_next = 1
