"""The wire layer's base: byte-exact packets, poll(2), table dispatch of commands.

python3-gearman counts packet lengths in characters, reads 4 KB at a time into
re-copied bytes and polls with select(); the classes here fix that for both the client
(``wire.client``) and the worker (``wire.worker``) side.
"""
import fcntl
import logging
import math
import select
import socket
import struct
import sys
import termios

from python3_gearman import errors as gerrors
from python3_gearman.connection import GearmanConnection
from python3_gearman.connection_manager import DataEncoder
from python3_gearman.protocol import (GEARMAN_COMMAND_JOB_ASSIGN,
                                      GEARMAN_COMMAND_JOB_ASSIGN_UNIQ,
                                      GEARMAN_COMMAND_TEXT_COMMAND,
                                      GEARMAN_PARAMS_FOR_COMMAND, get_command_name)

from ..addresses import ServerAddress
from ..errors import BadRequest, ServerUnavailable

log = logging.getLogger(__name__)

#: A connection's empty buffer larger than this (bytes allocated) is replaced by a new
#: one, so the room one big packet took is given back.
SHRINK_ABOVE = 1024 * 1024
#: Largest unique key that round-trips (64 bytes corrupts the payload, 65+ hangs).
MAX_UNIQUE_BYTES = 63
#: Largest function name gearmand keeps the connection for.
MAX_FUNCTION_BYTES = 8191
#: Bytes read from a socket per recv call (one buffer of this size per connection).
READ_CHUNK = 32 * 1024
#: Seconds a TCP connect to a job server may take.
CONNECT_TIMEOUT = 5.0

_HEADER = struct.Struct("!4sII")
_MAGIC_REQ = b"\0REQ"
_MAGIC_RES = b"\0RES"
_BINARY_FIELDS = frozenset({"data"})
_POLL_R = select.POLLIN | select.POLLPRI
_POLL_RW = _POLL_R | select.POLLOUT


def _packet(cmd_type, fields):
    """A request packet: the header, then the fields (bytes) joined by NUL."""
    payload = b"\0".join(fields)
    return _HEADER.pack(_MAGIC_REQ, cmd_type, len(payload)) + payload


def _as_bytes(value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return str(value).encode("utf-8", "surrogateescape")


class BytesEncoder(DataEncoder):
    """Job data is bytes; text given by a caller is sent as UTF-8."""

    @classmethod
    def encode(cls, encodable_object):
        if encodable_object is None:
            raise TypeError("job data must be bytes or str, got None")
        if isinstance(encodable_object, (bytes, bytearray, memoryview, str)):
            return _as_bytes(encodable_object)
        raise TypeError(f"job data must be bytes or str, got {type(encodable_object).__name__}")

    @classmethod
    def decode(cls, decodable_string):
        return decodable_string


class Oversized(bytes):
    """The data of a job whose packet was over the connection's ``max_packet``: empty (the
    bytes were read past and dropped as they arrived); ``size`` says how large it was."""

    size = 0

    @classmethod
    def of(cls, size):
        data = cls()
        data.size = size
        return data


#: Bytes kept of an oversized job packet: its handle, function (up to 8191 bytes) and
#: unique come first.
OVERSIZED_PREFIX = 16384
_JOB_ASSIGNS = (GEARMAN_COMMAND_JOB_ASSIGN, GEARMAN_COMMAND_JOB_ASSIGN_UNIQ)


class WireConnection(GearmanConnection):
    """A connection whose packets are bytes, measured in bytes, read in large chunks.

    ``max_packet`` (None: no limit) bounds what one packet may make it hold: a job packet
    over it is read past and dropped as it arrives, keeping only its first few KiB, and
    handed on as a job whose data is :class:`Oversized`; any other packet over it is a
    protocol error (the connection is dropped)."""

    max_packet = None
    #: Seconds after which a server that stopped answering (a vanished host or link:
    #: nothing sent, no FIN, no RST) fails this connection (None: the kernel's hours).
    dead_after = None
    #: Seconds a connect may take (a worker's is shorter: its loop waits on it).
    connect_timeout = CONNECT_TIMEOUT
    #: The server as configured (its str names it in messages, tls:// included).
    server = None
    #: The TlsClient for a tls:// server, else None (plain TCP).
    tls = None

    def _reset_connection(self):
        super()._reset_connection()
        self._incoming_buffer = bytearray()
        self._outgoing_buffer = bytearray()
        self._scratch = None
        self._skipping = None  # [command, bytes left, kept prefix, size] while skipping

    @property
    def address(self):
        return self.server or ServerAddress(self.gearman_host, self.gearman_port)

    def _create_client_socket(self):
        if self.tls is not None:  # the handshake is done blocking, then the socket is not
            try:
                sock = self.tls.connect(self.address, self.connect_timeout)
            except ServerUnavailable as err:
                self.throw_exception(message=str(err).split(": ", 1)[-1])
            if self.dead_after:
                detect_dead_peer(sock, self.dead_after)
            self.set_socket(sock)
            return
        try:
            sock = socket.create_connection((self.gearman_host, self.gearman_port),
                                            timeout=self.connect_timeout)
        except OSError as err:
            self.throw_exception(exception=err)
        if self.dead_after:
            detect_dead_peer(sock, self.dead_after)
        self.set_socket(sock)

    def read_data_from_socket(self, bytes_to_read=READ_CHUNK):
        if not self.connected:
            self.throw_exception(message="disconnected")
        if self._scratch is None:
            self._scratch = bytearray(READ_CHUNK)
        while True:
            try:
                received = self.gearman_socket.recv_into(self._scratch)
            except BlockingIOError:
                return len(self._incoming_buffer)
            except OSError as err:
                if self.tls is not None and self.tls.wants_io(err):
                    return len(self._incoming_buffer)
                self.throw_exception(exception=err)
            if received == 0:
                self.throw_exception(message="remote disconnected")
            with memoryview(self._scratch) as view:
                self._incoming_buffer += view[:received]
            # TLS may hold decrypted bytes that poll(2) cannot see: take them now
            if self.tls is None or not self.gearman_socket.pending():
                return len(self._incoming_buffer)

    def read_commands_from_buffer(self):
        buf = self._incoming_buffer
        count = 0
        if self._skipping is not None:
            count += self._skip(buf)
            if self._skipping is not None:
                return count
        offset, size = 0, len(buf)
        while size - offset >= _HEADER.size:
            magic, cmd_type, length = _HEADER.unpack_from(buf, offset)
            if magic != _MAGIC_RES:
                self.throw_exception(message=f"protocol error: bad magic {magic!r}")
            if self.max_packet is not None and length > self.max_packet:
                if cmd_type not in _JOB_ASSIGNS:
                    self.throw_exception(message=f"protocol error: a {length}-byte packet "
                                                 f"(over {self.max_packet})")
                del buf[:offset + _HEADER.size]
                self._skipping = [cmd_type, length, bytearray(), length]
                return count + self.read_commands_from_buffer()
            end = offset + _HEADER.size + length
            if end > size:
                break
            with memoryview(buf) as view:
                payload = view[offset + _HEADER.size:end].tobytes()
            self._incoming_commands.append((cmd_type, self._parse_args(cmd_type, payload)))
            offset, count = end, count + 1
        if offset:
            del buf[:offset]
            if not buf and sys.getsizeof(buf) > SHRINK_ABOVE:  # let a big job's room go
                self._incoming_buffer = bytearray()
        return count

    def _skip(self, buf):
        """Consume an oversized packet's bytes from ``buf``; 1 once it is whole (it is
        then queued as a job with Oversized data), else 0."""
        state = self._skipping
        taken = min(state[1], len(buf))
        room = OVERSIZED_PREFIX - len(state[2])
        if room > 0:
            state[2] += buf[:min(room, taken)]
        del buf[:taken]
        state[1] -= taken
        if state[1]:
            return 0
        self._skipping = None
        cmd_type, _left, prefix, size = state
        fields = GEARMAN_PARAMS_FOR_COMMAND[cmd_type]
        parts = bytes(prefix).split(b"\0", len(fields) - 1)[:len(fields) - 1]
        if len(parts) != len(fields) - 1:
            self.throw_exception(message="protocol error: an oversized job without a handle")
        args = {name: part.decode("utf-8", "surrogateescape") for name, part in
                zip(fields, parts)}
        args["data"] = Oversized.of(size)
        self._incoming_commands.append((cmd_type, args))
        return 1

    def _parse_args(self, cmd_type, payload):
        params = GEARMAN_PARAMS_FOR_COMMAND.get(cmd_type)
        if params is None or cmd_type == GEARMAN_COMMAND_TEXT_COMMAND:
            self.throw_exception(message=f"protocol error: unknown command {cmd_type}")
        if not params:
            return {}
        if params[-1] not in _BINARY_FIELDS:  # gearmand ends some (WORK_FAIL) with a NUL
            payload = payload.rstrip(b"\0")
        parts = payload.split(b"\0", len(params) - 1)
        if len(parts) != len(params):
            self.throw_exception(message=f"protocol error: {get_command_name(cmd_type)} "
                                         f"has {len(parts)} of {len(params)} arguments")
        return {name: part if name in _BINARY_FIELDS else part.decode("utf-8", "surrogateescape")
                for name, part in zip(params, parts)}

    def _pack_command(self, cmd_type, cmd_args):
        params = GEARMAN_PARAMS_FOR_COMMAND.get(cmd_type)
        if params is None or cmd_type == GEARMAN_COMMAND_TEXT_COMMAND:
            raise gerrors.ProtocolError(f"cannot send command {cmd_type} on a binary connection")
        return _packet(cmd_type, [_as_bytes(cmd_args[name]) for name in params])

    def queue_packet(self, cmd_type, *fields):
        """Pack a command (its fields as bytes) straight into the outgoing buffer, after
        whatever was queued before it: the library's per-command queue, three calls
        deep, costs a worker more than the packet does."""
        if self._outgoing_commands:
            self.send_commands_to_buffer()
        self._outgoing_buffer += _packet(cmd_type, fields)

    def send_commands_to_buffer(self):
        while self._outgoing_commands:
            self._outgoing_buffer += self._pack_command(*self._outgoing_commands.popleft())

    def send_data_to_socket(self):
        if not self.connected:
            self.throw_exception(message="disconnected")
        if not self._outgoing_buffer:
            return 0
        try:
            sent = self.gearman_socket.send(self._outgoing_buffer)
        except BlockingIOError:
            return len(self._outgoing_buffer)
        except OSError as err:
            if self.tls is not None and self.tls.wants_io(err):
                return len(self._outgoing_buffer)
            self.throw_exception(exception=err)
        del self._outgoing_buffer[:sent]
        if not self._outgoing_buffer and sys.getsizeof(self._outgoing_buffer) > SHRINK_ABOVE:
            self._outgoing_buffer = bytearray()
        return len(self._outgoing_buffer)


class PollMixin:
    """poll(2)-based polling: no 1024-descriptor limit, errors stay per connection."""

    connection_class = WireConnection
    data_encoder = BytesEncoder

    def attach_servers(self, servers):
        """Give each connection its configured server (ServerAddress: for messages, and
        the TLS client of a tls:// one); plain 'host:port' strings need nothing."""
        for conn, server in zip(self.connection_list, servers):
            if isinstance(server, ServerAddress):
                conn.server, conn.tls = server, server.tls_client

    def poll_connections_once(self, submitted_connections, timeout=None):
        readable, writable, failed = set(), set(), set()
        if timeout is not None and timeout < 0.0:
            return readable, writable, failed
        by_fd, masks = {}, {}
        for conn in submitted_connections:
            if not conn.connected:
                continue
            try:
                fd = conn.fileno()
            except gerrors.ConnectionError:
                failed.add(conn)
                continue
            masks[fd] = _POLL_RW if conn.writable() else _POLL_R
            by_fd[fd] = conn
        if not by_fd:
            return readable, writable, failed
        poller = self._poller_for(masks)
        wait_ms = None if timeout is None else int(math.ceil(timeout * 1000))
        for fd, event in poller.poll(wait_ms):
            conn = by_fd[fd]
            if event & (select.POLLIN | select.POLLPRI | select.POLLHUP):
                readable.add(conn)
            if event & select.POLLOUT:
                writable.add(conn)
            if event & (select.POLLERR | select.POLLNVAL):
                failed.add(conn)
        return readable, writable, failed

    def _poller_for(self, masks):
        """This manager's poll object, registered for exactly ``masks`` (fd -> events):
        kept from call to call, since most polls watch the same sockets as the last."""
        poller = getattr(self, "_poller", None)
        if poller is None:
            poller = self._poller = select.poll()
            self._poll_masks = {}
        registered = self._poll_masks
        if registered != masks:
            for fd in [fd for fd in registered if fd not in masks]:
                poller.unregister(fd)
                del registered[fd]
            for fd, mask in masks.items():
                if registered.get(fd) != mask:
                    poller.register(fd, mask)  # registers or modifies
                    registered[fd] = mask
        return poller

    def handle_read(self, current_connection):
        try:
            super().handle_read(current_connection)
        except gerrors.ConnectionError:
            raise
        except Exception as err:  # a broken packet or state: drop this connection only
            log.exception("gearmand %s: dropping the connection after %s",
                          current_connection.address, type(err).__name__)
            current_connection.throw_exception(message=f"protocol failure: {err!r}")


#: recv_* callback name per command type (the library builds the name per packet).
_CALLBACKS = {cmd_type: name.lower().replace("gearman_command_", "recv_")
              for cmd_type in GEARMAN_PARAMS_FOR_COMMAND
              if (name := get_command_name(cmd_type)).startswith("GEARMAN_COMMAND_")}


class DispatchMixin:
    """Command handlers that find their recv_* callback in a table and read the
    connection's parsed commands directly: same behaviour, a fraction of the work."""

    def fetch_commands(self):
        connection = self.connection_manager.handler_to_connection_map[self]
        commands = connection._incoming_commands
        while commands:
            cmd_type, cmd_args = commands.popleft()
            if not self.recv_command(cmd_type, **cmd_args):
                break

    def recv_command(self, cmd_type, **cmd_args):
        callback = getattr(self, _CALLBACKS.get(cmd_type, ""), None)
        if callback is None:  # unknown or unhandled: the library raises its error
            return super().recv_command(cmd_type, **cmd_args)
        return callback(**cmd_args)


def detect_dead_peer(sock, seconds):
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


def unacknowledged(conn) -> int:
    """Bytes written on ``conn`` that the server's TCP has not acknowledged yet (0 if
    unknown): above 0 for long, the link is down."""
    sock = getattr(conn, "gearman_socket", None)
    if sock is None:
        return 0
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ,
                                              b"\0\0\0\0"))[0]
    except (OSError, ValueError):
        return 0


def abort_socket(conn) -> None:
    """Make ``conn``'s close a reset that discards what it has not sent (a close would
    still deliver it once the link is back)."""
    sock = getattr(conn, "gearman_socket", None)
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass


_GONE = select.POLLERR | select.POLLHUP | select.POLLNVAL | getattr(select, "POLLRDHUP", 0)


def connection_gone(conn) -> bool:
    """True if ``conn``'s socket is closed, closed by the server, or in error (a failed
    keepalive): checked without reading, so from any thread."""
    sock = getattr(conn, "gearman_socket", None)
    if not conn.connected or sock is None:
        return True
    try:
        poller = select.poll()
        poller.register(sock.fileno(), _GONE)
        return any(events & _GONE for _fd, events in poller.poll(0))
    except (OSError, ValueError):
        return True


def open_socket(address, timeout=CONNECT_TIMEOUT):
    """A blocking socket connected to ``address`` (a ServerAddress), through TLS for a
    tls:// one; ServerUnavailable naming the server and why when it cannot be had."""
    if getattr(address, "tls_client", None) is not None:
        return address.tls_client.connect(address, timeout)
    try:
        return socket.create_connection(address.pair, timeout=timeout)
    except OSError as err:
        raise ServerUnavailable(f"{address}: {err.strerror or err}", [address]) from err


def check_request(task, unique):
    """Raise BadRequest for a function name or unique key gearmand would mishandle."""
    task_bytes = _as_bytes(task)
    if not task_bytes or b"\0" in task_bytes or len(task_bytes) > MAX_FUNCTION_BYTES:
        raise BadRequest(f"function name must be 1 to {MAX_FUNCTION_BYTES} bytes without NUL, "
                         f"got {len(task_bytes)} bytes")
    if unique is not None:
        unique_bytes = _as_bytes(unique)
        if b"\0" in unique_bytes or len(unique_bytes) > MAX_UNIQUE_BYTES:
            raise BadRequest(f"unique key must be at most {MAX_UNIQUE_BYTES} bytes without "
                             f"NUL, got {len(unique_bytes)} bytes")


def _pair(server):
    if isinstance(server, ServerAddress):
        return server.pair
    return server
