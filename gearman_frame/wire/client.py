"""The client side of the wire layer: resendable uniques, REFUSED requests, change lists."""
import collections
import logging
import time

from python3_gearman import errors as gerrors
from python3_gearman.client import GearmanClient
from python3_gearman.client_handler import GearmanClientCommandHandler
from python3_gearman.constants import (JOB_COMPLETE, JOB_CREATED, JOB_FAILED, JOB_PENDING,
                                       JOB_UNKNOWN,
                                       PRIORITY_HIGH, PRIORITY_LOW, PRIORITY_NONE)
from python3_gearman.job import GearmanJobRequest
from python3_gearman.protocol import GEARMAN_COMMAND_OPTION_REQ

from ..errors import BadRequest, ServerRefused, ServerUnavailable, SubmitTimeout
from .connection import (DispatchMixin, PollMixin, _as_bytes, _pair, abort_socket,
                         check_request, unacknowledged)
from .refusals import Refusals, refused_command

log = logging.getLogger(__name__)

PRIORITIES = {"high": PRIORITY_HIGH, "normal": PRIORITY_NONE, "low": PRIORITY_LOW}
#: A background job gearmand holds until an epoch time (gearmand 1.1.20: on every queue).
SUBMIT_JOB_EPOCH = 36
#: Request state for a job gearmand answered with an ERROR packet.
JOB_REFUSED = "REFUSED"
#: What servers without parts of the protocol (the Perl job server) refused, per process.
REFUSED = Refusals()
#: Priority variants a server may lack, and what is sent instead: (background, priority)
#: -> priority. The Perl job server has SUBMIT_JOB, SUBMIT_JOB_BG and SUBMIT_JOB_HIGH only.
PRIORITY_VARIANTS = "SUBMIT_JOB_LOW, SUBMIT_JOB_HIGH_BG or SUBMIT_JOB_LOW_BG"
PRIORITY_FALLBACK = {(False, PRIORITY_LOW): PRIORITY_NONE, (True, PRIORITY_HIGH): PRIORITY_NONE,
                     (True, PRIORITY_LOW): PRIORITY_NONE}


class WireJobRequest(GearmanJobRequest):
    """A request that can also end REFUSED (gearmand sent ERROR instead of JOB_CREATED)."""

    def initialize_request(self):
        super().initialize_request()
        self.server_error = None
        #: Epoch second before which gearmand must not hand the job out (None: now).
        self.epoch = None

    @property
    def handle(self):
        """gearmand's job handle, or None if the job was never queued."""
        return self.job.handle

    @property
    def complete(self):
        return self.state == JOB_REFUSED or super().complete

    @property
    def connected(self):
        """True while the connection this request went out on is up."""
        connection = self.job.connection
        return connection is not None and connection.connected


def _status(job_handle, known, running, numerator, denominator):
    """A request's ``status`` record, as the library keeps it."""
    return {"handle": job_handle, "known": known, "running": running,
            "numerator": int(numerator or 0), "denominator": int(denominator or 0),
            "time_received": time.time()}


class WireClientHandler(DispatchMixin, GearmanClientCommandHandler):
    """Client state per connection; several requests may share a handle (same unique)."""

    def __init__(self, connection_manager=None):
        super().__init__(connection_manager=connection_manager)
        self.handle_to_request_map = collections.defaultdict(list)
        self.option_pending = False

    def _connection(self):
        return self.connection_manager.handler_to_connection_map[self]

    def initial_state(self, *args, **kwargs):
        """Ask for exceptions first thing: without it gearmand 1.1.20 turns a foreign
        worker's WORK_EXCEPTION into a WORK_FAIL that drops the text."""
        super().initial_state(*args, **kwargs)
        self._connection().queue_packet(GEARMAN_COMMAND_OPTION_REQ, b"exceptions")
        self.option_pending = True

    def recv_option_res(self, option_name):
        self.option_pending = False
        return True

    def send_job_request(self, current_request):
        """Send a delayed job as SUBMIT_JOB_EPOCH (no priority: gearmand has none for
        it), and a priority variant the server refused before as its fallback."""
        if current_request.epoch is not None:
            job = current_request.job
            self._connection().queue_packet(
                SUBMIT_JOB_EPOCH, _as_bytes(job.task), _as_bytes(job.unique or ""),
                str(current_request.epoch).encode(), self.encode_data(job.data))
            current_request.state = JOB_PENDING
            self.requests_awaiting_handles.append(current_request)
            return
        variant = (current_request.background, current_request.priority)
        if variant in PRIORITY_FALLBACK and REFUSED.has(self._connection().address,
                                                        PRIORITY_VARIANTS):
            current_request.priority = PRIORITY_FALLBACK[variant]
        super().send_job_request(current_request)

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
            self._changed(request)  # streamed output: the caller shows it as it comes
        return True

    def recv_work_status(self, job_handle, numerator, denominator):
        for request in self._live(job_handle):
            request.status = _status(job_handle, True, True, numerator, denominator)
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
        """An exception ends the job as failed, with its text: gearmand 1.1.20 sends it
        alone; the Perl job server sends a WORK_FAIL after it, which then finds no one."""
        for request in self._live(job_handle):
            request.exception = data
        return self._finish(job_handle, JOB_FAILED)

    def recv_status_res(self, job_handle, known, running, numerator, denominator):
        for request in list(self.handle_to_request_map.get(job_handle, ())):
            request.status = _status(job_handle, known == "1", running == "1", numerator,
                                     denominator)
        return True

    def recv_error(self, error_code, error_text):
        """An ERROR answers the oldest request still waiting: the exceptions option (a
        server without it just does not send exceptions), or a job: refused for good,
        or, for a priority variant the server lacks, sent again as its fallback."""
        server = self._connection().address
        if self.option_pending:
            self.option_pending = False
            log.info("gearmand %s has no exceptions option: %s: %s", server, error_code,
                     error_text)
            return True
        if not self.requests_awaiting_handles:
            log.error("gearmand %s sent ERROR %s: %s", server, error_code, error_text)
            return True
        request = self.requests_awaiting_handles.popleft()
        variant = (request.background, request.priority)
        if variant in PRIORITY_FALLBACK and refused_command(error_text) is not None:
            REFUSED.note(server, PRIORITY_VARIANTS, "high/low background and low foreground jobs "
                                             "are sent with normal priority")
            request.state = JOB_UNKNOWN
            self.send_job_request(request)
            return True
        request.state = JOB_REFUSED
        request.server_error = ServerRefused(error_code, error_text, server)
        self._changed(request)
        log.warning("gearmand %s refused job %s: %s: %s", server, request.job.unique,
                    error_code, error_text)
        return True


class WireClient(PollMixin, GearmanClient):
    """GearmanClient with byte payloads, resendable uniques and surfaced server errors."""

    command_handler_class = WireClientHandler
    job_request_class = WireJobRequest

    def __init__(self, servers):
        #: A list to collect requests whose state changed (set by a caller that wants to
        #: look only at those, not at every request in flight); None: not collected.
        self.changed = None
        self._epoch = None
        super().__init__(host_list=[_pair(s) for s in servers])
        self.attach_servers(servers)

    def _create_request_from_dictionary(self, job_info, background=False, max_retries=0):
        if job_info.get("unique") == "-":
            raise BadRequest("unique key '-' (use the data as unique) is not supported")
        check_request(job_info["task"], job_info.get("unique"))
        request = super()._create_request_from_dictionary(job_info, background, max_retries)
        request.epoch = self._epoch if background else None
        return request

    def submit(self, task, data, unique=None, priority="normal", background=False,
               timeout=None, wait=True, epoch=None):
        """Submit one job; return its request, raising ServerRefused / SubmitTimeout.
        ``epoch`` (a background job) holds it at gearmand until that epoch second.

        A SubmitTimeout carries ``handle``: None if gearmand never queued the job.
        """
        self._epoch = epoch  # taken by the request submit_job creates
        try:
            request = self.submit_job(task, data, unique=unique, priority=PRIORITIES[priority],
                                      background=background, wait_until_complete=wait,
                                      poll_timeout=timeout)
        finally:
            self._epoch = None
        if request.complete or (background and request.handle):
            self.forget(request)  # nothing more will come for it: do not keep its data
        if request.state == JOB_REFUSED:
            raise request.server_error
        if request.timed_out:
            raise SubmitTimeout(f"job {request.job.unique} on '{task}' timed out after "
                                f"{timeout}s ({'queued' if request.handle else 'not queued'})",
                                handle=request.handle)
        return request

    # -- the surface the dispatcher uses: send, poll for changes, forget
    def send(self, index, task, data, unique, priority="normal", background=False,
             flush=False, epoch=None):
        """Send one request on the connection to server ``index`` (connecting first if
        needed) and return it; ``flush`` writes it to the socket at once; ``epoch`` (a
        background job) holds it at gearmand until that epoch second. Raises
        ServerUnavailable if that server cannot be reached. Only requests sent this way
        are listed by :meth:`poll`."""
        conn = self.connection_list[index]
        request = self._create_request_from_dictionary(
            {"task": task, "data": data, "unique": unique, "priority": PRIORITIES[priority]},
            background=background)
        request.epoch = epoch
        self.request_to_rotating_connection_queue[request] = collections.deque([conn])
        try:
            self.establish_connection(conn)
            self.send_job_request(request)
            if flush:
                conn.send_commands_to_buffer()
                conn.send_data_to_socket()
        except (gerrors.ServerUnavailable, gerrors.ConnectionError) as err:
            self.forget(request)
            reason = str(err).split("> ", 1)[-1]
            raise ServerUnavailable(f"{conn.address}: {reason}", [conn.address]) from err
        if self.changed is None:
            self.changed = []
        return request

    def unacknowledged(self, index):
        """Bytes sent on the connection to server ``index`` that its TCP has not yet
        acknowledged (0 if unknown or not connected): above 0 for long, the link is down."""
        conn = self.connection_list[index]
        return unacknowledged(conn) if conn.connected else 0

    def abort(self, index):
        """Drop the connection to server ``index`` at once, discarding what it has not
        sent (a reset, not a close that would deliver it later); its requests are
        reported lost."""
        conn = self.connection_list[index]
        abort_socket(conn)
        self.handle_error(conn)

    def any_connected(self):
        return any(c.connected for c in self.connection_list)

    def is_connected(self, index):
        """True while the connection to server ``index`` is up."""
        return self.connection_list[index].connected

    def poll(self, timeout):
        """Wait up to ``timeout`` seconds for answers; return the requests sent with
        :meth:`send` whose state changed since the last call (answered, refused, or lost
        with their connection)."""
        live = [c for c in self.connection_list if c.connected]
        if live:
            readable, writable, failed = self.poll_connections_once(live, timeout)
            self.handle_connection_activity(readable, writable, failed)
        elif timeout:
            time.sleep(timeout)
        changed, self.changed = self.changed or [], []
        return changed

    def forget(self, request):
        """Drop the library's bookkeeping for a request that needs no more answers (it
        would otherwise keep every request, and its data, for the client's life)."""
        self.request_to_rotating_connection_queue.pop(request, None)
        handler = self.connection_to_handler_map.get(request.job.connection)
        if handler is not None and request.job.handle:
            handler._unregister_request(request)

    def submit_multiple_requests(self, job_requests, wait_until_complete=True,
                                 poll_timeout=None):
        try:
            return super().submit_multiple_requests(job_requests, wait_until_complete,
                                                    poll_timeout)
        except (gerrors.ServerUnavailable, gerrors.ExceededConnectionAttempts) as err:
            raise ServerUnavailable(f"no job server reachable: {err}",
                                    [c.address for c in self.connection_list]) from err
