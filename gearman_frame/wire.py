"""The wire layer: python3-gearman, subclassed where it breaks.

Everything in gearman-frame talks to gearmand through this module. The library keeps
doing what it does well (command handlers, request state, connection management); these
subclasses fix what it gets wrong against gearmand 1.1.20:

* payloads are bytes end to end and packet lengths are counted in bytes (the library
  counts characters, truncating 'héllo' to 'héll', and raises UnicodeDecodeError on
  bytes that are not UTF-8);
* reads go into a growing bytearray in 32 KiB chunks (the library's 4 KB reads into
  re-copied bytes take 20+ s for 16 MB);
* polling uses poll(2), which has no FD_SETSIZE limit, and a socket error becomes a
  ConnectionError on that connection (the library's select() turns any OSError into
  SystemExit, which silently ends a thread);
* a client may resend the same unique key (the library raises KeyError when gearmand
  answers two requests with one handle);
* ERROR packets (QUEUE_FULL, argument too large) fail the pending request instead of
  leaving it PENDING forever;
* uniques over 63 bytes and function names gearmand would drop the connection for are
  refused before they are sent;
* a worker never sends WORK_EXCEPTION, survives callbacks that raise or return the wrong
  type, reconnects with capped backoff when a server goes away and comes back, and grabs
  its next job without a PRE_SLEEP/NOOP round trip when it has one server.
"""
import collections
import logging
import math
import select
import socket
import struct
import threading
import time

from python3_gearman import errors as gerrors
from python3_gearman.client import GearmanClient
from python3_gearman.client_handler import GearmanClientCommandHandler
from python3_gearman.connection import GearmanConnection
from python3_gearman.connection_manager import DataEncoder
from python3_gearman.constants import (JOB_COMPLETE, JOB_CREATED, JOB_FAILED, JOB_UNKNOWN, PRIORITY_HIGH, PRIORITY_LOW,
                                       PRIORITY_NONE)
from python3_gearman.job import GearmanJobRequest
from python3_gearman.protocol import (GEARMAN_COMMAND_TEXT_COMMAND,
                                      GEARMAN_PARAMS_FOR_COMMAND, get_command_name)
from python3_gearman.worker import GearmanWorker
from python3_gearman.worker_handler import GearmanWorkerCommandHandler

from .addresses import ServerAddress
from .errors import BadRequest, ServerRefused, ServerUnavailable, SubmitTimeout

log = logging.getLogger(__name__)

#: Largest unique key that round-trips (64 bytes corrupts the payload, 65+ hangs).
MAX_UNIQUE_BYTES = 63
#: Largest function name gearmand keeps the connection for.
MAX_FUNCTION_BYTES = 8191
#: Bytes read from a socket per recv call (one buffer of this size per connection).
READ_CHUNK = 32 * 1024
#: Seconds a TCP connect to a job server may take.
CONNECT_TIMEOUT = 5.0
#: First and largest wait (seconds) between reconnect attempts to a lost server.
RECONNECT_MIN = 0.1
RECONNECT_MAX = 5.0
#: Seconds a worker's poll waits before checking whether it was asked to stop.
WORKER_POLL_INTERVAL = 0.25

PRIORITIES = {"high": PRIORITY_HIGH, "normal": PRIORITY_NONE, "low": PRIORITY_LOW}
#: Request state for a job gearmand answered with an ERROR packet.
JOB_REFUSED = "REFUSED"

_HEADER = struct.Struct("!4sII")
_MAGIC_REQ = b"\0REQ"
_MAGIC_RES = b"\0RES"
_BINARY_FIELDS = frozenset({"data"})
_POLL_R = select.POLLIN | select.POLLPRI
_POLL_RW = _POLL_R | select.POLLOUT


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


class WireConnection(GearmanConnection):
    """A connection whose packets are bytes, measured in bytes, read in large chunks."""

    def _reset_connection(self):
        super()._reset_connection()
        self._incoming_buffer = bytearray()
        self._outgoing_buffer = bytearray()
        self._scratch = None

    @property
    def address(self):
        return ServerAddress(self.gearman_host, self.gearman_port)

    def _create_client_socket(self):
        try:
            sock = socket.create_connection((self.gearman_host, self.gearman_port),
                                            timeout=CONNECT_TIMEOUT)
        except OSError as err:
            self.throw_exception(exception=err)
        self.set_socket(sock)

    def read_data_from_socket(self, bytes_to_read=READ_CHUNK):
        if not self.connected:
            self.throw_exception(message="disconnected")
        if self._scratch is None:
            self._scratch = bytearray(READ_CHUNK)
        try:
            received = self.gearman_socket.recv_into(self._scratch)
        except BlockingIOError:
            return len(self._incoming_buffer)
        except OSError as err:
            self.throw_exception(exception=err)
        if received == 0:
            self.throw_exception(message="remote disconnected")
        with memoryview(self._scratch) as view:
            self._incoming_buffer += view[:received]
        return len(self._incoming_buffer)

    def read_commands_from_buffer(self):
        buf = self._incoming_buffer
        offset, count, size = 0, 0, len(buf)
        while size - offset >= _HEADER.size:
            magic, cmd_type, length = _HEADER.unpack_from(buf, offset)
            if magic != _MAGIC_RES:
                self.throw_exception(message=f"protocol error: bad magic {magic!r}")
            end = offset + _HEADER.size + length
            if end > size:
                break
            with memoryview(buf) as view:
                payload = view[offset + _HEADER.size:end].tobytes()
            self._incoming_commands.append((cmd_type, self._parse_args(cmd_type, payload)))
            offset, count = end, count + 1
        if offset:
            del buf[:offset]
        return count

    def _parse_args(self, cmd_type, payload):
        params = GEARMAN_PARAMS_FOR_COMMAND.get(cmd_type)
        if params is None or cmd_type == GEARMAN_COMMAND_TEXT_COMMAND:
            self.throw_exception(message=f"protocol error: unknown command {cmd_type}")
        if not params:
            return {}
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
        payload = b"\0".join(_as_bytes(cmd_args[name]) for name in params)
        return _HEADER.pack(_MAGIC_REQ, cmd_type, len(payload)) + payload

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
            self.throw_exception(exception=err)
        del self._outgoing_buffer[:sent]
        return len(self._outgoing_buffer)


class PollMixin:
    """poll(2)-based polling: no 1024-descriptor limit, errors stay per connection."""

    connection_class = WireConnection
    data_encoder = BytesEncoder

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


# --- client ------------------------------------------------------------------------

class WireJobRequest(GearmanJobRequest):
    """A request that can also end REFUSED (gearmand sent ERROR instead of JOB_CREATED)."""

    def initialize_request(self):
        super().initialize_request()
        self.server_error = None

    @property
    def handle(self):
        """gearmand's job handle, or None if the job was never queued."""
        return self.job.handle

    @property
    def complete(self):
        return self.state == JOB_REFUSED or super().complete


class WireClientHandler(DispatchMixin, GearmanClientCommandHandler):
    """Client state per connection; several requests may share a handle (same unique)."""

    def __init__(self, connection_manager=None):
        super().__init__(connection_manager=connection_manager)
        self.handle_to_request_map = collections.defaultdict(list)

    def _register_request(self, current_request):
        requests = self.handle_to_request_map[current_request.job.handle]
        if current_request not in requests:
            requests.append(current_request)

    def _unregister_request(self, current_request):
        requests = self.handle_to_request_map.get(current_request.job.handle, [])
        if current_request in requests:
            requests.remove(current_request)
        if not requests:
            self.handle_to_request_map.pop(current_request.job.handle, None)

    def _changed(self, request):
        """Tell the client (if it listens) that ``request`` changed state."""
        changed = self.connection_manager.changed
        if changed is not None:
            changed.append(request)

    def recv_job_created(self, job_handle):
        request = self.requests_awaiting_handles[0] if self.requests_awaiting_handles else None
        super().recv_job_created(job_handle)
        self._changed(request)
        return True

    def on_io_error(self):
        for request in self.requests_awaiting_handles:
            request.state = JOB_UNKNOWN
            self._changed(request)
        for requests in self.handle_to_request_map.values():
            for request in requests:
                request.state = JOB_UNKNOWN
                self._changed(request)

    def _live(self, job_handle):
        return [r for r in self.handle_to_request_map.get(job_handle, ())
                if r.state == JOB_CREATED]

    def recv_work_data(self, job_handle, data):
        for request in self._live(job_handle):
            request.data_updates.append(data)
        return True

    def recv_work_warning(self, job_handle, data):
        for request in self._live(job_handle):
            request.warning_updates.append(data)
        return True

    def recv_work_status(self, job_handle, numerator, denominator):
        for request in self._live(job_handle):
            request.status = {"handle": job_handle, "known": True, "running": True,
                              "numerator": int(numerator), "denominator": int(denominator),
                              "time_received": time.time()}
        return True

    def _finish(self, job_handle, state, result=None):
        for request in self._live(job_handle):
            request.result = result
            request.state = state
            self._unregister_request(request)
            self._changed(request)
        return True

    def recv_work_complete(self, job_handle, data):
        return self._finish(job_handle, JOB_COMPLETE, data)

    def recv_work_fail(self, job_handle):
        return self._finish(job_handle, JOB_FAILED)

    def recv_work_exception(self, job_handle, data):
        for request in self._live(job_handle):
            request.exception = data
        return True

    def recv_status_res(self, job_handle, known, running, numerator, denominator):
        for request in list(self.handle_to_request_map.get(job_handle, ())):
            request.status = {"handle": job_handle, "known": known == "1",
                              "running": running == "1", "numerator": int(numerator or 0),
                              "denominator": int(denominator or 0),
                              "time_received": time.time()}
        return True

    def recv_error(self, error_code, error_text):
        connection = self.connection_manager.handler_to_connection_map.get(self)
        server = connection.address if connection else None
        if self.requests_awaiting_handles:
            request = self.requests_awaiting_handles.popleft()
            request.state = JOB_REFUSED
            request.server_error = ServerRefused(error_code, error_text, server)
            self._changed(request)
            log.warning("gearmand %s refused job %s: %s: %s", server, request.job.unique,
                        error_code, error_text)
        else:
            log.error("gearmand %s sent ERROR %s: %s", server, error_code, error_text)
        return True


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


class WireClient(PollMixin, GearmanClient):
    """GearmanClient with byte payloads, resendable uniques and surfaced server errors."""

    command_handler_class = WireClientHandler
    job_request_class = WireJobRequest

    def __init__(self, servers):
        #: A list to collect requests whose state changed (set by a caller that wants to
        #: look only at those, not at every request in flight); None: not collected.
        self.changed = None
        super().__init__(host_list=[_pair(s) for s in servers])

    def _create_request_from_dictionary(self, job_info, background=False, max_retries=0):
        if job_info.get("unique") == "-":
            raise BadRequest("unique key '-' (use the data as unique) is not supported")
        check_request(job_info["task"], job_info.get("unique"))
        return super()._create_request_from_dictionary(job_info, background, max_retries)

    def submit(self, task, data, unique=None, priority="normal", background=False,
               timeout=None, wait=True):
        """Submit one job; return its request, raising ServerRefused / SubmitTimeout.

        A SubmitTimeout carries ``handle``: None if gearmand never queued the job.
        """
        request = self.submit_job(task, data, unique=unique, priority=PRIORITIES[priority],
                                  background=background, wait_until_complete=wait,
                                  poll_timeout=timeout)
        if request.state == JOB_REFUSED:
            raise request.server_error
        if request.timed_out:
            raise SubmitTimeout(f"job {request.job.unique} on '{task}' timed out after "
                                f"{timeout}s ({'queued' if request.handle else 'not queued'})",
                                handle=request.handle)
        return request

    def submit_multiple_requests(self, job_requests, wait_until_complete=True,
                                 poll_timeout=None):
        try:
            return super().submit_multiple_requests(job_requests, wait_until_complete,
                                                    poll_timeout)
        except (gerrors.ServerUnavailable, gerrors.ExceededConnectionAttempts) as err:
            raise ServerUnavailable(f"no job server reachable: {err}",
                                    [c.address for c in self.connection_list]) from err


# --- worker ------------------------------------------------------------------------

class JobFailed:
    """Returned by a worker callback to fail a job: ``data`` goes out as WORK_DATA first,
    so the sender (even the C ``gearman`` client) still gets the details."""

    __slots__ = ("data",)

    def __init__(self, data=b""):
        self.data = data


class AbandonJob(Exception):
    """Raised by a worker callback to leave a job unanswered: the connection it came on is
    closed, so gearmand hands the job to another worker (used when a stopping worker had
    to kill the command)."""


class WireWorkerHandler(DispatchMixin, GearmanWorkerCommandHandler):
    """Worker state per connection; grabs the next job at once when it is the only one."""

    def recv_no_job(self):
        self.connection_manager.note_grab(empty=True)
        return super().recv_no_job()

    def recv_job_assign_uniq(self, job_handle, task, unique, data):
        manager = self.connection_manager
        manager.note_grab(empty=False)
        if not manager.check_job_lock(self):
            raise gerrors.InvalidWorkerState("received a job we did not ask for")
        job = manager.create_job(self, job_handle, task, unique, data)
        manager.on_job_execute(job)  # the answer is queued, not yet written
        if manager.grab_directly():
            self._grab_job()
        else:
            self._release_job_lock()
            self._sleep()
        manager.send_answer(job)  # the answer and the next request in one write
        return True


class WireWorker(PollMixin, GearmanWorker):
    """One worker connection set (one per thread): survives errors, reconnects, stops."""

    command_handler_class = WireWorkerHandler

    def __init__(self, servers, client_id=None):
        super().__init__(host_list=[_pair(s) for s in servers])
        self._stopping = threading.Event()
        self._retry_at = {}
        self._skip_direct, self._skip_next, self._direct_pending = 0, 1, False
        self.busy = False
        self._answering = False
        if client_id:
            self.set_client_id(client_id)

    # -- life cycle
    def stop(self):
        """Stop taking jobs; work() returns after the job in hand (if any) is answered."""
        self._stopping.set()

    @property
    def stopping(self):
        return self._stopping.is_set()

    def grab_directly(self):
        """Ask for the next job right after one is done (saving the PRE_SLEEP/NOOP round
        trip) while that keeps finding jobs; after it finds none, skip it for 1, 2, 4 ...
        up to 64 jobs, so an idle-ish worker does not pay a wasted round trip per job."""
        if self.stopping or len(self.connection_list) != 1:
            return False
        if self._skip_direct > 0:
            self._skip_direct -= 1
            return False
        self._direct_pending = True
        return True

    def note_grab(self, empty):
        if self._direct_pending:
            self._direct_pending = False
            if empty:
                self._skip_direct = self._skip_next
                self._skip_next = min(64, self._skip_next * 2)
            else:
                self._skip_next = 1

    def work(self, poll_timeout=WORKER_POLL_INTERVAL):
        """Serve jobs until stop(); never exits because servers are down."""
        try:
            while not self.stopping:
                live = self.connect_due()
                if not live:
                    self._stopping.wait(self._seconds_to_next_try())
                    continue
                readable, writable, failed = self.poll_connections_once(live, poll_timeout)
                self.handle_connection_activity(readable, writable, failed)
                self._write_now(readable)
        finally:
            self.shutdown()

    def _write_now(self, connections):
        """Send what reading queued (GRAB_JOB after a NOOP) without polling for it first:
        the socket almost always takes it, and a poll round costs as much as the send."""
        for conn in connections:
            if conn.connected and conn.writable():
                try:
                    self.handle_write(conn)
                except gerrors.ConnectionError:
                    self.handle_error(conn)

    def connect_due(self):
        """Return the live connections, reconnecting those whose backoff has passed."""
        now, live = time.monotonic(), []
        for conn in self.connection_list:
            if conn.connected:
                live.append(conn)
                continue
            due, delay = self._retry_at.get(conn, (0.0, RECONNECT_MIN))
            if now < due:
                continue
            try:
                self.establish_connection(conn)
            except gerrors.ConnectionError as err:
                if delay == RECONNECT_MIN:
                    log.warning("gearmand %s unreachable, retrying with backoff: %s",
                                conn.address, err)
                self._retry_at[conn] = (now + delay, min(delay * 2, RECONNECT_MAX))
                continue
            if conn in self._retry_at:
                log.info("gearmand %s: reconnected", conn.address)
            self._retry_at.pop(conn, None)
            live.append(conn)
        return live

    def _seconds_to_next_try(self):
        now = time.monotonic()
        waits = [due - now for due, _ in self._retry_at.values()]
        return max(0.01, min(waits, default=RECONNECT_MIN))

    def handle_error(self, current_connection):
        if current_connection.connected or current_connection in self.connection_to_handler_map:
            log.warning("gearmand %s: connection lost", current_connection.address)
        self._retry_at.setdefault(current_connection, (time.monotonic(), RECONNECT_MIN))
        super().handle_error(current_connection)

    # -- jobs
    def send_answer(self, job):
        """Write the job's queued answer (and what was queued after it) to its socket."""
        try:
            self.wait_until_updates_sent([job])
        except (gerrors.ConnectionError, gerrors.ServerUnavailable) as err:
            log.error("job %s (%s): result not delivered, gearmand %s went away: %s",
                      job.unique, job.handle, job.connection.address, err)

    def wait_until_updates_sent(self, multiple_gearman_jobs, poll_timeout=None):
        """Write a job's updates straight to its socket (it is almost always writable);
        poll only for what the socket did not take. While a job is being answered, the
        answer only queues: ``send_answer`` writes it with the next request."""
        if self._answering:
            return
        connections = {job.connection for job in multiple_gearman_jobs}
        for conn in connections:
            if conn.writable():
                conn.send_commands_to_buffer()
                conn.send_data_to_socket()
        if any(conn.writable() for conn in connections):
            super().wait_until_updates_sent(multiple_gearman_jobs, poll_timeout)

    def on_job_execute(self, current_job):
        """Run the callback; whatever happens, answer the job and keep the thread alive."""
        self.busy = True
        try:
            outcome = self._call(current_job)
            self._answering = True
            if isinstance(outcome, JobFailed):
                if outcome.data:
                    self.send_job_data(current_job, outcome.data)
                self.send_job_failure(current_job)
            else:
                self.send_job_complete(current_job, outcome)
        except AbandonJob as why:
            log.warning("job %s (%s): left unanswered for gearmand to requeue: %s",
                        current_job.unique, current_job.handle, why)
            current_job.connection.throw_exception(message="job abandoned")
        except (gerrors.ConnectionError, gerrors.ServerUnavailable) as err:
            log.error("job %s (%s): result not delivered, gearmand %s went away: %s",
                      current_job.unique, current_job.handle, current_job.connection.address,
                      err)
        finally:
            self.busy = False
            self._answering = False
        return True

    def _call(self, job):
        try:
            outcome = self.worker_abilities[job.task](self, job)
            return outcome if isinstance(outcome, JobFailed) else self.data_encoder.encode(outcome)
        except AbandonJob:
            raise
        except Exception as err:  # never let a job end the thread; never WORK_EXCEPTION
            log.exception("job %s on %s: callback failed", job.unique, job.task)
            return JobFailed(f"{type(err).__name__}: {err}".encode("utf-8", "replace"))


def _pair(server):
    if isinstance(server, ServerAddress):
        return server.pair
    return server
