"""The client side of the port: requests and their answers, on our own connections.

A WireClient holds one Connection per server and, per connection, the requests waiting
for JOB_CREATED (in the order sent: gearmand answers in order) and those created, by
handle (several may share one: a resent unique is coalesced by gearmand into the job it
has). What a caller sees of a job is a Request: its state and what came back for it.
"""
from __future__ import annotations

import collections
import logging
import random
import socket
import time
from typing import Callable, Iterable

from ..errors import BadRequest, ConnectionLost, ServerRefused, ServerUnavailable, SubmitTimeout
from . import packets as p
from ..addresses import ServerAddress
from .connection import Connection, Poller, ServerLike, check_request
from .refusals import Refusals, refused_command

log = logging.getLogger(__name__)

#: A request's states: sent and waiting for JOB_CREATED; queued by gearmand; answered;
#: failed; refused by gearmand (an ERROR); its connection lost before it was answered.
JOB_PENDING, JOB_CREATED, JOB_COMPLETE = "PENDING", "CREATED", "COMPLETE"
JOB_FAILED, JOB_REFUSED, JOB_UNKNOWN = "FAILED", "REFUSED", "UNKNOWN"
PRIORITIES = ("high", "normal", "low")
#: What servers without parts of the protocol (the Perl job server) refused, per process.
REFUSED = Refusals()
#: Priority variants a server may lack, and what is sent instead: (background, priority)
#: -> priority. The Perl job server has SUBMIT_JOB, SUBMIT_JOB_BG and SUBMIT_JOB_HIGH only.
PRIORITY_VARIANTS = "SUBMIT_JOB_LOW, SUBMIT_JOB_HIGH_BG or SUBMIT_JOB_LOW_BG"
PRIORITY_FALLBACK = {(False, "low"): "normal", (True, "high"): "normal",
                     (True, "low"): "normal"}


class Request:
    """One job sent to one server, and what came back for it."""

    __slots__ = ("task", "unique", "data", "priority", "background", "epoch", "state",
                 "handle", "result", "data_updates", "warning_updates", "exception",
                 "status", "progressed", "server_error", "timed_out", "_conn", "_sock")

    def __init__(self, task: str, unique: str | None, data: bytes, priority: str = "normal",
                 background: bool = False, epoch: int | None = None) -> None:
        self.task, self.unique, self.data = task, unique, data
        self.priority, self.background = priority, background
        #: Epoch second before which gearmand must not hand the job out (None: now).
        self.epoch = epoch
        self.state = JOB_UNKNOWN
        #: gearmand's job handle, or None if the job was never queued.
        self.handle: str | None = None
        self.result: bytes | None = None
        self.data_updates: list = []
        self.warning_updates: list = []
        self.exception: bytes | None = None
        #: The last WORK_STATUS or STATUS_RES: {"numerator", "denominator", ...}.
        self.status: dict = {}
        #: A WORK_STATUS came since the caller last looked (it resets this).
        self.progressed = False
        self.server_error: ServerRefused | None = None
        self.timed_out = False
        self._conn: Connection | None = None
        self._sock: socket.socket | None = None

    @property
    def complete(self) -> bool:
        return self.state in (JOB_COMPLETE, JOB_FAILED, JOB_REFUSED)

    @property
    def connected(self) -> bool:
        """True while the connection this request went out on is up."""
        return self._conn is not None and self._conn.sock is not None \
            and self._conn.sock is self._sock

    @property
    def server(self) -> ServerAddress | None:
        return None if self._conn is None else self._conn.address

    def __repr__(self) -> str:
        return f"<Request {self.task} {self.unique} {self.state}>"


class _Link:
    """What one connection has in flight (made anew on each connect)."""

    __slots__ = ("conn", "awaiting", "by_handle", "option_pending")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.awaiting: collections.deque = collections.deque()
        self.by_handle: dict[str, list] = {}
        self.option_pending = False


class WireClient:
    """Sends jobs to gearmand and collects their answers; byte payloads both ways."""

    def __init__(self, servers: Iterable[ServerLike]) -> None:
        self.connections = [Connection(s) for s in servers]
        self.servers = [c.address for c in self.connections]
        self._links: dict[Connection, _Link] = {}
        self._poller = Poller()
        #: Requests whose state changed since the last poll (sent with send()).
        self._changed: list = []

    # -- connections
    def _link(self, conn: Connection) -> _Link:
        """The live link of ``conn``, connecting (and asking for exceptions) if needed;
        ConnectionLost if it cannot be had."""
        link = self._links.get(conn)
        if link is not None and conn.sock is not None:
            return link
        conn.connect()
        link = self._links[conn] = _Link(conn)
        # without it gearmand 1.1.20 turns a foreign worker's WORK_EXCEPTION into a
        # WORK_FAIL that drops the text
        conn.queue(p.OPTION_REQ, b"exceptions")
        link.option_pending = True
        return link

    def _lost(self, conn: Connection) -> None:
        """``conn`` failed: close it; its requests are lost (state UNKNOWN)."""
        link = self._links.pop(conn, None)
        conn.close()
        if link is None:
            return
        for request in link.awaiting:
            self._set(request, JOB_UNKNOWN)
        for requests in link.by_handle.values():
            for request in requests:
                self._set(request, JOB_UNKNOWN)

    def _set(self, request: Request, state: str) -> None:
        request.state = state
        self._changed.append(request)

    def any_connected(self) -> bool:
        return any(c.sock is not None for c in self.connections)

    def is_connected(self, index: int) -> bool:
        """True while the connection to server ``index`` is up."""
        return self.connections[index].sock is not None

    def unacknowledged(self, index: int) -> int:
        """Bytes sent to server ``index`` that its TCP has not acknowledged (0 if unknown or
        not connected): above 0 for long, the link is down."""
        return self.connections[index].unacknowledged()

    def abort(self, index: int) -> None:
        """Drop the connection to server ``index`` at once, discarding what it has not sent
        (a reset, not a close that would deliver it later); its requests are lost."""
        conn = self.connections[index]
        conn.abort()
        self._lost(conn)

    def close(self) -> None:
        for conn in self.connections:
            self._lost(conn)

    # -- sending
    def send(self, index: int, task: str, data: bytes | str, unique: str | None,
             priority: str = "normal", background: bool = False, flush: bool = False,
             epoch: int | None = None) -> Request:
        """Send one request to server ``index`` (connecting first if needed) and return it;
        ``flush`` writes it to the socket at once; ``epoch`` (a background job) holds it at
        gearmand until that epoch second. ServerUnavailable if that server cannot be
        reached; BadRequest for a request gearmand would mishandle."""
        request = self._request(task, data, unique, priority, background, epoch)
        conn = self.connections[index]
        try:
            self._send(self._link(conn), request)
            if flush:
                conn.flush()
        except ConnectionLost as err:
            self._lost(conn)
            reason = str(err).split(": ", 1)[-1]
            raise ServerUnavailable(f"{conn.address}: {reason}", [conn.address]) from err
        return request

    @staticmethod
    def _request(task: str, data: bytes | str, unique: str | None, priority: str,
                 background: bool, epoch: int | None) -> Request:
        if unique == "-":
            raise BadRequest("unique key '-' (use the data as unique) is not supported")
        if data is None or not isinstance(data, (bytes, bytearray, memoryview, str)):
            raise TypeError(f"job data must be bytes or str, got {type(data).__name__}")
        if unique is None:  # gearmand coalesces nothing into a random key
            unique = random.getrandbits(64).to_bytes(8, "big").hex()
        check_request(task, unique)
        if priority not in PRIORITIES:
            raise BadRequest(f"priority must be one of {', '.join(PRIORITIES)}, got {priority!r}")
        return Request(task, unique, p.as_bytes(data), priority, background,
                       epoch if background else None)

    def _send(self, link: _Link, request: Request) -> None:
        """Queue ``request`` on ``link``: SUBMIT_JOB_EPOCH for a delayed job (no priority:
        gearmand has none for it), else the priority variant (its fallback where the
        server refused it before)."""
        conn = link.conn
        task, unique = p.as_bytes(request.task), p.as_bytes(request.unique or "")
        if request.epoch is not None:
            conn.queue(p.SUBMIT_JOB_EPOCH, task, unique, str(int(request.epoch)), request.data)
        else:
            variant = (request.background, request.priority)
            if variant in PRIORITY_FALLBACK and REFUSED.has(conn.address, PRIORITY_VARIANTS):
                request.priority = PRIORITY_FALLBACK[variant]
            conn.queue(p.SUBMIT_COMMANDS[(request.background, request.priority)], task,
                       unique, request.data)
        request.state, request._conn, request._sock = JOB_PENDING, conn, conn.sock
        link.awaiting.append(request)

    # -- receiving
    def poll(self, timeout: float) -> list[Request]:
        """Wait up to ``timeout`` seconds for answers; return the requests whose state
        changed since the last call (answered, refused, or lost with their connection)."""
        live = [c for c in self.connections if c.sock is not None]
        if live:
            self._poll_once(live, timeout)
        elif timeout:
            time.sleep(timeout)
        changed, self._changed = self._changed, []
        return changed

    def _poll_once(self, live: list[Connection], timeout: float) -> None:
        readable, writable, failed = self._poller.poll(live, timeout)
        for conn in live:
            if conn in failed:
                self._lost(conn)
                continue
            try:
                if conn in readable:
                    link = self._links[conn]
                    for cmd, fields in conn.read():
                        self._on_packet(link, cmd, fields)
                if conn.out and conn.sock is not None:
                    conn.flush()
            except ConnectionLost as err:
                log.debug("gearmand %s: %s", conn.address, err)
                self._lost(conn)

    def _on_packet(self, link: _Link, cmd: int, fields: tuple) -> None:
        if cmd == p.JOB_CREATED:
            if link.awaiting:
                request = link.awaiting.popleft()
                request.handle = fields[0]
                request.state = JOB_CREATED
                link.by_handle.setdefault(fields[0], []).append(request)
                self._changed.append(request)
        elif cmd in _BY_HANDLE:
            _BY_HANDLE[cmd](self, link, *fields)
        elif cmd == p.ERROR:
            self._on_error(link, *fields)
        elif cmd == p.OPTION_RES:
            link.option_pending = False

    def _live(self, link: _Link, handle: str) -> list[Request]:
        return [r for r in link.by_handle.get(handle, ()) if r.state == JOB_CREATED]

    def _on_data(self, link: _Link, handle: str, data: bytes) -> None:
        for request in self._live(link, handle):
            request.data_updates.append(data)

    def _on_warning(self, link: _Link, handle: str, data: bytes) -> None:
        for request in self._live(link, handle):
            request.warning_updates.append(data)
            self._changed.append(request)  # streamed output: the caller shows it as it comes

    def _on_status(self, link: _Link, handle: str, numerator: str, denominator: str) -> None:
        for request in self._live(link, handle):
            request.status = _status(handle, True, True, numerator, denominator)
            request.progressed = True
            self._changed.append(request)  # progress: the caller shows it as it comes

    def _on_status_res(self, link: _Link, handle: str, known: str, running: str,
                       numerator: str, denominator: str) -> None:
        for request in link.by_handle.get(handle, ()):
            request.status = _status(handle, known == "1", running == "1", numerator,
                                     denominator)

    def _finish(self, link: _Link, handle: str, state: str, result: bytes | None = None) -> None:
        for request in self._live(link, handle):
            request.result = result
            self._set(request, state)
            self._unregister(link, request)

    def _on_complete(self, link: _Link, handle: str, data: bytes) -> None:
        self._finish(link, handle, JOB_COMPLETE, data)

    def _on_fail(self, link: _Link, handle: str) -> None:
        self._finish(link, handle, JOB_FAILED)

    def _on_exception(self, link: _Link, handle: str, data: bytes) -> None:
        """An exception ends the job as failed, with its text: gearmand 1.1.20 sends it
        alone; the Perl job server sends a WORK_FAIL after it, which then finds no one."""
        for request in self._live(link, handle):
            request.exception = data
        self._finish(link, handle, JOB_FAILED)

    @staticmethod
    def _unregister(link: _Link, request: Request) -> None:
        if request.handle is None:
            return
        requests = link.by_handle.get(request.handle, [])
        if request in requests:
            requests.remove(request)
        if not requests:
            link.by_handle.pop(request.handle, None)

    def _on_error(self, link: _Link, code: str, text: str) -> None:
        """An ERROR answers the oldest request still waiting: the exceptions option (a
        server without it just does not send exceptions), or a job: refused for good,
        or, for a priority variant the server lacks, sent again as its fallback."""
        server = link.conn.address
        if link.option_pending:
            link.option_pending = False
            log.info("gearmand %s has no exceptions option: %s: %s", server, code, text)
            return
        if not link.awaiting:
            log.error("gearmand %s sent ERROR %s: %s", server, code, text)
            return
        request = link.awaiting.popleft()
        variant = (request.background, request.priority)
        if variant in PRIORITY_FALLBACK and refused_command(text) is not None:
            REFUSED.note(server, PRIORITY_VARIANTS, "high/low background and low foreground "
                                                    "jobs are sent with normal priority")
            self._send(link, request)
            return
        request.server_error = ServerRefused(code, text, server)
        self._set(request, JOB_REFUSED)
        log.warning("gearmand %s refused job %s: %s: %s", server, request.unique, code, text)

    def forget(self, request: Request) -> None:
        """Drop what is kept for a request that needs no more answers."""
        link = self._links.get(request._conn) if request._conn is not None else None
        if link is not None and request.handle:
            self._unregister(link, request)

    # -- one job, blocking
    def submit(self, task: str, data: bytes | str, unique: str | None = None,
               priority: str = "normal", background: bool = False,
               timeout: float | None = None, wait: bool = True,
               epoch: int | None = None) -> Request:
        """Submit one job to any server (tried in random order) and return its request:
        answered (``wait``) or queued. Raises ServerRefused, SubmitTimeout (``handle``:
        None if gearmand never queued the job) and ServerUnavailable."""
        deadline = None if timeout is None else time.monotonic() + timeout
        request = self._submit_somewhere(task, data, unique, priority, background, epoch)
        self._wait(request, deadline, until=lambda r: r.state != JOB_PENDING)
        if request.state == JOB_UNKNOWN:
            raise ServerUnavailable(f"{request.server}: connection lost before the job was "
                                    "queued", self.servers)
        waits = wait and not background
        if waits and request.state == JOB_CREATED:
            self._wait(request, deadline, until=lambda r: r.state != JOB_CREATED)
        self._changed.clear()  # nothing polls these
        unanswered = (JOB_PENDING, JOB_CREATED, JOB_UNKNOWN) if waits else (JOB_PENDING,)
        request.timed_out = request.state in unanswered
        if request.complete or (background and request.handle):
            self.forget(request)  # nothing more will come for it: do not keep its data
        if request.server_error is not None:
            raise request.server_error
        if request.timed_out:
            raise SubmitTimeout(f"job {request.unique} on '{task}' timed out after "
                                f"{timeout}s ({'queued' if request.handle else 'not queued'})",
                                handle=request.handle)
        return request

    def _submit_somewhere(self, task: str, data: bytes | str, unique: str | None,
                          priority: str, background: bool, epoch: int | None) -> Request:
        order = list(range(len(self.connections)))
        random.shuffle(order)
        problems = []
        for index in order:
            try:
                return self.send(index, task, data, unique, priority, background,
                                 flush=True, epoch=epoch)
            except ServerUnavailable as err:
                problems.append(str(err))
        raise ServerUnavailable("no job server reachable: " + "; ".join(problems),
                                self.servers)

    def _wait(self, request: Request, deadline: float | None,
              until: Callable[[Request], bool]) -> None:
        while not until(request) and request.state != JOB_UNKNOWN:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            self.poll(0.25 if left is None else min(left, 0.25))


_BY_HANDLE: dict[int, Callable[..., None]] = {p.WORK_DATA: WireClient._on_data, p.WORK_WARNING: WireClient._on_warning,
              p.WORK_STATUS: WireClient._on_status, p.STATUS_RES: WireClient._on_status_res,
              p.WORK_COMPLETE: WireClient._on_complete, p.WORK_FAIL: WireClient._on_fail,
              p.WORK_EXCEPTION: WireClient._on_exception}


def _status(handle: str, known: bool, running: bool, numerator: str,
            denominator: str) -> dict:
    """A request's ``status`` record."""
    return {"handle": handle, "known": known, "running": running,
            "numerator": _count(numerator), "denominator": _count(denominator),
            "time_received": time.time()}


def _count(text: object) -> int:
    return int(text) if isinstance(text, str) and text.isdigit() else 0
