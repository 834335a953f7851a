"""One connection to a job server, and poll(2) over many.

A Connection owns its socket, its outgoing bytes and a Parser for what comes in; it
raises ConnectionLost (naming the server) for every way a socket can fail, and never
SystemExit (python3-gearman's select() turned any OSError into one, silently ending a
thread). Reads go into a growing bytearray in 32 KiB chunks.
"""
from __future__ import annotations

import fcntl
import math
import select
import socket
import struct
import sys
import termios
import time
from typing import Iterable, Union

from ..addresses import ServerAddress, parse_address
from ..errors import BadRequest, ConnectionLost, ServerUnavailable
from .packets import Parser, as_bytes, request

#: Largest unique key that round-trips (64 bytes corrupts the payload, 65+ hangs).
MAX_UNIQUE_BYTES = 63
#: Largest function name gearmand keeps the connection for.
MAX_FUNCTION_BYTES = 8191
#: Bytes read from a socket per recv call (one buffer of this size per connection).
READ_CHUNK = 32 * 1024
#: Seconds a TCP connect to a job server may take.
CONNECT_TIMEOUT = 5.0
#: Seconds after a failed connect before the next attempt to that server (a refused one
#: is not retried in a tight loop).
CONNECT_COOLDOWN = 1.0
_SHRINK_ABOVE = 1024 * 1024
_POLL_R = select.POLLIN | select.POLLPRI
_POLL_RW = _POLL_R | select.POLLOUT
#: What a server may be given as: an address, ``host:port``, or ``(host, port)``.
ServerLike = Union[ServerAddress, str, tuple]
_GONE = select.POLLERR | select.POLLHUP | select.POLLNVAL | getattr(select, "POLLRDHUP", 0)


def server_address(server: ServerLike) -> ServerAddress:
    """A ServerAddress from one (kept), a ``host:port`` string or a ``(host, port)`` pair."""
    if isinstance(server, ServerAddress):
        return server
    if isinstance(server, tuple):
        return ServerAddress(server[0], int(server[1]))
    return parse_address(server)


class Connection:
    """A connection to one server; ``connect()`` again after it failed."""

    def __init__(self, server: ServerLike,
                 connect_timeout: float = CONNECT_TIMEOUT,
                 dead_after: float | None = None, max_packet: int | None = None) -> None:
        #: The server as configured (its str names it in messages, tls:// included).
        self.address = server_address(server)
        self.connect_timeout = connect_timeout
        #: Seconds after which a server that stopped answering (a vanished host or link:
        #: nothing sent, no FIN, no RST) fails this connection (None: the kernel's hours).
        self.dead_after = dead_after
        self.max_packet = max_packet
        self.sock: socket.socket | None = None
        self.out = bytearray()
        self.parser = Parser(max_packet)
        #: Parsed packets not yet handled, oldest first.
        self.commands: list = []
        self._scratch: bytearray | None = None
        self._next_connect = 0.0

    @property
    def connected(self) -> bool:
        return self.sock is not None

    def __repr__(self) -> str:
        return f"<Connection {self.address} connected={self.connected}>"

    # -- life cycle
    def connect(self) -> None:
        """Open the socket (a TLS one for tls://); ConnectionLost naming the server."""
        if self.sock is not None:
            return
        now = time.monotonic()
        if now < self._next_connect:
            raise ConnectionLost(f"{self.address}: not retried within {CONNECT_COOLDOWN:g}s "
                                 "of a failed connect")
        try:
            sock = open_socket(self.address, self.connect_timeout)
        except ServerUnavailable as err:
            self._next_connect = now + CONNECT_COOLDOWN
            raise ConnectionLost(str(err)) from err
        if self.dead_after:
            detect_dead_peer(sock, self.dead_after)
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.out, self.parser, self.commands = bytearray(), Parser(self.max_packet), []
        self.sock = sock

    def close(self) -> None:
        """Close the socket (if open); what was not sent is dropped."""
        sock, self.sock = self.sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
        self.out, self.commands = bytearray(), []

    def abort(self) -> None:
        """Make the next close a reset that discards what was not sent (a close would still
        deliver it once the link is back)."""
        if self.sock is not None:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                     struct.pack("ii", 1, 0))
            except OSError:
                pass

    def fail(self, why: str) -> ConnectionLost:
        """Close, and the error to raise: ``raise conn.fail("...")``."""
        self.close()
        return ConnectionLost(f"{self.address}: {why}")

    # -- bytes
    def queue(self, cmd: int, *fields: object) -> None:
        """Append a request packet (its fields bytes, str or numbers) to what is sent."""
        self.out += request(cmd, *fields)

    def writable(self) -> bool:
        return self.sock is not None and bool(self.out)

    def fileno(self) -> int:
        if self.sock is None:
            raise ConnectionLost(f"{self.address}: not connected")
        return self.sock.fileno()

    def flush(self) -> int:
        """Write what the socket takes now; return the bytes still waiting."""
        if self.sock is None:
            raise ConnectionLost(f"{self.address}: not connected")
        if not self.out:
            return 0
        try:
            sent = self.sock.send(self.out)
        except BlockingIOError:
            return len(self.out)
        except OSError as err:
            if self._tls_wants_io(err):
                return len(self.out)
            raise self.fail(f"send failed: {err}") from err
        del self.out[:sent]
        if not self.out and sys.getsizeof(self.out) > _SHRINK_ABOVE:
            self.out = bytearray()
        return len(self.out)

    def flush_all(self, timeout: float | None = None) -> bool:
        """Write everything queued, waiting up to ``timeout`` seconds (None: as long as
        it takes) for the socket to take it; False if some is still waiting then."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.flush():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            sock = self.sock
            if sock is None:
                raise ConnectionLost(f"{self.address}: not connected")
            poller = select.poll()
            poller.register(sock.fileno(), select.POLLOUT)
            poller.poll(None if left is None else max(1, int(left * 1000)))
        return True

    def read(self) -> list:
        """Read what the socket has and return the whole packets received (the
        connection's ``commands``, taken); ConnectionLost if the server closed it."""
        if self.sock is None:
            raise ConnectionLost(f"{self.address}: not connected")
        if self._scratch is None:
            self._scratch = bytearray(READ_CHUNK)
        sock, parser = self.sock, self.parser
        while True:
            try:
                received = sock.recv_into(self._scratch)
            except BlockingIOError:
                break
            except OSError as err:
                if self._tls_wants_io(err):
                    break
                raise self.fail(f"receive failed: {err}") from err
            if received == 0:
                raise self.fail("remote disconnected")
            with memoryview(self._scratch) as view:
                parser.buffer += view[:received]
            # TLS may hold decrypted bytes that poll(2) cannot see: take them now
            if self.address.tls_client is None or not sock.pending():  # type: ignore[attr-defined]
                break
        try:
            parser.feed(self.commands)
        except ConnectionLost as err:
            raise self.fail(str(err)) from err
        commands, self.commands = self.commands, []
        return commands

    def _tls_wants_io(self, err: OSError) -> bool:
        tls = self.address.tls_client
        return tls is not None and tls.wants_io(err)

    # -- what the kernel knows
    def unacknowledged(self) -> int:
        """Bytes written that the server's TCP has not acknowledged yet (0 if unknown):
        above 0 for long, the link is down."""
        if self.sock is None:
            return 0
        try:
            return struct.unpack("i", fcntl.ioctl(self.sock.fileno(), termios.TIOCOUTQ,
                                                  b"\0\0\0\0"))[0]
        except (OSError, ValueError):
            return 0

    def gone(self) -> bool:
        """True if the socket is closed, closed by the server, or in error (a failed
        keepalive): checked without reading, so from any thread."""
        sock = self.sock
        if sock is None:
            return True
        try:
            poller = select.poll()
            poller.register(sock.fileno(), _GONE)
            return any(events & _GONE for _fd, events in poller.poll(0))
        except (OSError, ValueError):
            return True


class Poller:
    """poll(2) over connections: no 1024-descriptor limit, errors stay per connection.
    The poll object is kept from call to call (most polls watch the same sockets)."""

    def __init__(self) -> None:
        self._poll = select.poll()
        self._masks: dict[int, int] = {}

    def poll(self, connections: Iterable[Connection], timeout: float | None,
             ) -> tuple[set[Connection], set[Connection], set[Connection]]:
        """``(readable, writable, failed)`` sets of ``connections`` (connected ones)."""
        readable: set = set()
        writable: set = set()
        failed: set = set()
        by_fd, masks = {}, {}
        for conn in connections:
            if conn.sock is None:
                continue
            try:
                fd = conn.sock.fileno()
            except OSError:
                failed.add(conn)
                continue
            masks[fd] = _POLL_RW if conn.out else _POLL_R
            by_fd[fd] = conn
        if not by_fd:
            return readable, writable, failed
        self._register(masks)
        wait_ms = None if timeout is None else max(0, int(math.ceil(timeout * 1000)))
        for fd, event in self._poll.poll(wait_ms):
            conn = by_fd[fd]
            if event & (select.POLLIN | select.POLLPRI | select.POLLHUP):
                readable.add(conn)
            if event & select.POLLOUT:
                writable.add(conn)
            if event & (select.POLLERR | select.POLLNVAL):
                failed.add(conn)
        return readable, writable, failed

    def _register(self, masks: dict[int, int]) -> None:
        registered = self._masks
        if registered == masks:
            return
        for fd in [fd for fd in registered if fd not in masks]:
            self._poll.unregister(fd)
            del registered[fd]
        for fd, mask in masks.items():
            if registered.get(fd) != mask:
                self._poll.register(fd, mask)  # registers or modifies
                registered[fd] = mask


def detect_dead_peer(sock: socket.socket, seconds: float) -> None:
    """Make ``sock`` fail within about ``seconds`` once its peer stops answering: TCP
    keepalive while it is idle (probes from a third of the time on), TCP_USER_TIMEOUT
    while data waits unacknowledged (a keepalive never starts then)."""
    idle = max(1, int(seconds / 3))
    interval = max(1, int(seconds / 6))
    count = max(1, math.ceil((seconds - idle) / interval))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(seconds * 1000))
    except (OSError, AttributeError):  # not Linux: the kernel's defaults stay
        pass


def open_socket(address: ServerAddress, timeout: float = CONNECT_TIMEOUT) -> socket.socket:
    """A blocking socket connected to ``address`` (a ServerAddress), through TLS for a
    tls:// one; ServerUnavailable naming the server and why when it cannot be had."""
    if address.tls_client is not None:
        return address.tls_client.connect(address, timeout)
    try:
        return socket.create_connection(address.pair, timeout=timeout)
    except OSError as err:
        raise ServerUnavailable(f"{address}: {err.strerror or err}", [address]) from err


def check_request(task: object, unique: object) -> None:
    """Raise BadRequest for a function name or unique key gearmand would mishandle."""
    task_bytes = as_bytes(task)
    if not task_bytes or b"\0" in task_bytes or len(task_bytes) > MAX_FUNCTION_BYTES:
        raise BadRequest(f"function name must be 1 to {MAX_FUNCTION_BYTES} bytes without NUL, "
                         f"got {len(task_bytes)} bytes")
    if unique is not None:
        unique_bytes = as_bytes(unique)
        if b"\0" in unique_bytes or len(unique_bytes) > MAX_UNIQUE_BYTES:
            raise BadRequest(f"unique key must be at most {MAX_UNIQUE_BYTES} bytes without "
                             f"NUL, got {len(unique_bytes)} bytes")
