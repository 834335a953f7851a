"""AdminClient: gearmand's admin protocol across every configured server.

One method per admin command. Each call fans out to all servers (or the ones named) and
returns typed records carrying their server; totals across servers are computed once, in
:func:`totals`. A server that cannot be reached is reported in ``unreachable`` and
skipped; if none can be reached the call raises ServerUnavailable.
"""
from __future__ import annotations

import getpass
import logging
import socket
from collections import defaultdict
from typing import Any, Callable, Iterable, Sequence

from gearman_frame.addresses import ServerAddress
from gearman_frame.errors import AdminError, AdminUnsupported, ConnectionLost, ServerUnavailable
from gearman_frame.wire import CONNECT_TIMEOUT, open_socket

from gearman_frame.wire import admin_protocol as proto

log = logging.getLogger(__name__)

#: Who an action that changes state is logged under.
WHO = f"{getpass.getuser()}@{socket.gethostname()}"

#: Seconds to wait for a reply to one admin command.
REPLY_TIMEOUT = 10.0


class AdminConnection:
    """One admin text-protocol connection to one gearmand."""

    def __init__(self, address: ServerAddress, timeout: float = REPLY_TIMEOUT) -> None:
        self.address = address
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buffer = proto.ReplyBuffer()

    def _connect(self) -> socket.socket:
        if self._sock is None:
            try:
                sock = open_socket(self.address, CONNECT_TIMEOUT)
            except ServerUnavailable as err:
                raise ConnectionLost(str(err)) from err
            sock.settimeout(self.timeout)
            self._sock = sock
        return self._sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def command(self, text: str) -> Any:
        """Send one command (CRLF-ended: gearmand drops the last character of a line ended
        by a bare LF) and return its reply: a list of lines, or one line."""
        multi = text in proto.MULTI_LINE
        sock = self._connect()
        try:
            sock.sendall(text.encode("utf-8") + b"\r\n")
            while True:
                reply = self._buffer.take_block() if multi else self._buffer.take_line()
                if reply is not None:
                    return reply
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionLost(f"{self.address}: connection closed mid-reply to "
                                         f"'{text}'")
                self._buffer.feed(chunk)
        except OSError as err:
            self.close()
            raise ConnectionLost(f"{self.address}: {err.strerror or err}") from err
        except ConnectionLost:
            self.close()
            raise


class AdminClient:
    """Admin commands over all ``servers`` (ServerAddress objects)."""

    def __init__(self, servers: Sequence[ServerAddress], timeout: float = REPLY_TIMEOUT) -> None:
        self.connections = [AdminConnection(s, timeout) for s in servers]
        self.unreachable: dict[str, str] = {}
        #: servers that answered the last command with ``unknown_command``
        self.unsupported: list[str] = []
        #: ``(server, line)`` for each reply line that could not be parsed and was left out.
        self.skipped: list[tuple[str, str]] = []

    def close(self) -> None:
        for conn in self.connections:
            conn.close()

    def __enter__(self) -> "AdminClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fan_out(self, text: str, parse: Callable[[Any, str], Any]) -> list:
        """Run ``text`` on every server; return parse(reply, server) results, flattened.
        A server without the command is left out (listed in ``unsupported``); if no
        server that answered has it, AdminUnsupported."""
        results, self.unreachable, self.unsupported = [], {}, []
        for conn in self.connections:
            server = str(conn.address)
            try:
                reply = conn.command(text)
            except ConnectionLost as err:
                self.unreachable[server] = str(err)
                log.warning("admin: %s", err)
                continue
            try:
                parsed = parse(reply, server)
            except AdminError as err:
                if not proto.unsupported(err):
                    raise
                self.unsupported.append(server)
                log.debug("admin: %s does not support '%s'", server, text)
                continue
            results.extend(parsed if isinstance(parsed, list) else [parsed])
        if len(self.unreachable) == len(self.connections):
            raise ServerUnavailable("no job server reachable: " + "; ".join(
                self.unreachable.values()), [c.address for c in self.connections])
        if self.unsupported and len(self.unsupported) + len(self.unreachable) == \
                len(self.connections):
            raise AdminUnsupported(text, self.unsupported)
        return results

    def _lenient(self, parse: Callable[..., Any]) -> Callable[[Any, str], Any]:
        return lambda lines, server: parse(lines, server, self.skipped)

    def _each_ok(self, text: str) -> list[tuple[str, str]]:
        return self._fan_out(text, lambda line, server: (server, proto.parse_ok(line, server)))

    # -- one method per admin command
    def status(self) -> list[proto.FunctionStatus]:
        return self._fan_out("status", self._lenient(proto.parse_status))

    def prioritystatus(self) -> list[proto.PriorityStatus]:
        return self._fan_out("prioritystatus", self._lenient(proto.parse_prioritystatus))

    def workers(self) -> list[proto.WorkerConnection]:
        return self._fan_out("workers", self._lenient(proto.parse_workers))

    def show_jobs(self) -> list[proto.QueuedJob]:
        return self._fan_out("show jobs", self._lenient(proto.parse_jobs))

    def show_unique_jobs(self) -> list[tuple[str, str]]:
        return self._fan_out("show unique jobs",
                             lambda lines, server: [(server, u) for u in
                                                    proto.parse_uniques(lines, server)])

    def version(self) -> list[tuple[str, str]]:
        return self._fan_out("version", lambda line, server: (server, proto.parse_version(
            line, server)))

    def getpid(self) -> list[tuple[str, int]]:
        return [(server, int(pid)) for server, pid in self._each_ok("getpid")]

    def verbose(self) -> list[tuple[str, str]]:
        return self._each_ok("verbose")

    def cancel_job(self, handle: str) -> list[tuple[str, object]]:
        """Cancel a queued job by handle on the server that knows it; [(server, result)]."""
        return self._tolerant(f"cancel job {handle}")

    def maxqueue(self, function: str, size: int) -> list[tuple[str, str]]:
        return self._each_ok(f"maxqueue {function} {int(size)}")

    def create_function(self, function: str) -> list[tuple[str, str]]:
        return self._each_ok(f"create function {function}")

    def _tolerant(self, text: str) -> list:
        """Like _each_ok, but an ERR from one server is a result, not an exception."""
        def parse(line: str, server: str) -> tuple[str, object]:
            try:
                return server, proto.parse_ok(line, server) or "OK"
            except AdminError as err:
                if proto.unsupported(err):
                    raise
                return server, err
        return self._fan_out(text, parse)


def totals(rows: Iterable[proto.FunctionStatus]) -> dict[str, proto.FunctionStatus]:
    """Sum FunctionStatus rows over servers: {function: FunctionStatus(server='all')}."""
    summed: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in rows:
        acc = summed[row.function]
        acc[0] += row.queued
        acc[1] += row.running
        acc[2] += row.workers
    return {fn: proto.FunctionStatus("all", fn, *acc) for fn, acc in sorted(summed.items())}


def set_maxqueue(admin: AdminClient, function: str, size: int) -> None:
    """Limit ``function``'s queue to ``size`` jobs on every server of ``admin``."""
    try:  # gearmand's maxqueue only applies to a function it knows
        admin.create_function(function)
    except AdminUnsupported:  # the Perl job server: maxqueue works without it
        pass
    admin.maxqueue(function, size)
    log.info("maxqueue: %s set %s to %d on %s", WHO, function, size,
             [str(c.address) for c in admin.connections])
