"""The worker side of the wire layer: survive any callback, reconnect, grab directly."""
import collections
import logging
import threading
import time

from python3_gearman import errors as gerrors
from python3_gearman.protocol import (GEARMAN_COMMAND_ECHO_REQ, GEARMAN_COMMAND_GRAB_JOB,
                                      GEARMAN_COMMAND_GRAB_JOB_UNIQ,
                                      GEARMAN_COMMAND_SUBMIT_JOB_BG,
                                      GEARMAN_COMMAND_PRE_SLEEP, GEARMAN_COMMAND_WORK_COMPLETE,
                                      GEARMAN_COMMAND_WORK_DATA, GEARMAN_COMMAND_WORK_EXCEPTION,
                                      GEARMAN_COMMAND_WORK_FAIL)
from python3_gearman.worker import GearmanWorker
from python3_gearman.worker_handler import GearmanWorkerCommandHandler

from ..retry import RetryPolicy
from .connection import (DispatchMixin, PollMixin, _as_bytes, _pair, abort_socket,
                         unacknowledged)
from .refusals import Refusals, refused_command

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


#: What servers without parts of the protocol (the Perl job server) refused, per process.
REFUSED = Refusals()


class Submit:
    """A background job a worker submits on a job's own connection (a result to its
    channel): gearmand queues it before it reads what follows (the job's answer), with no
    round trip to wait for. ``on_lost()`` is called if gearmand refuses it (ERROR) or the
    connection drops before JOB_CREATED (or the job is abandoned before it went out), so
    the caller can keep it elsewhere."""

    __slots__ = ("function", "unique", "data", "on_lost")

    def __init__(self, function, unique, data, on_lost=None):
        self.function, self.unique, self.data, self.on_lost = function, unique, data, on_lost

    def lost(self, why):
        if self.on_lost is not None:
            try:
                self.on_lost(why)
            except Exception:  # a keeper that fails must not end the thread
                log.exception("could not keep %s (%s)", self.function, why)


def submit_on(job, submit: Submit, now=False) -> None:
    """Submit ``submit`` on ``job``'s connection: just before the job's answer (the
    default: held with the job until its answer is queued), or at once (``now``: a notice
    that the job started)."""
    if not now:
        job.publications += (submit,)
        return
    _queue_submit(job, submit)
    try:
        job.connection.send_data_to_socket()
    except (gerrors.ConnectionError, gerrors.ServerUnavailable):
        pass  # the connection's loss reports the submit lost


def _queue_submit(job, submit):
    job.connection.queue_packet(GEARMAN_COMMAND_SUBMIT_JOB_BG, _as_bytes(submit.function),
                                _as_bytes(submit.unique), _as_bytes(submit.data))
    job.connection_manager_handler.submits.append(submit)


def _publications(job):
    """The submits held for ``job``'s answer, taken (each goes out, or is lost, once)."""
    held, job.publications = job.publications, ()
    return held


#: What a worker's unanswered job becomes once another thread took it over.
_TAKEN = object()


class WireWorkerHandler(DispatchMixin, GearmanWorkerCommandHandler):
    """Worker state per connection; grabs the next job at once when it is the only one."""

    _grab_sent = None  # the grab request last sent, to know what an ERROR refused
    #: A grab sent ahead of submits is unanswered; its answer comes after those of the
    #: ``_before_grab`` oldest submits (sent before it) and before the others'.
    _grab_ahead, _before_grab = False, 0

    def __init__(self, connection_manager=None):
        super().__init__(connection_manager=connection_manager)
        #: Submits sent on this connection, oldest first, waiting for JOB_CREATED.
        self.submits = collections.deque()

    def recv_job_created(self, job_handle):
        if self.submits:
            self.submits.popleft()
            self._before_grab = max(0, self._before_grab - 1)
        return True

    def on_io_error(self):
        self._grab_ahead, self._before_grab = False, 0
        while self.submits:
            self.submits.popleft().lost("the connection to gearmand was lost")

    def _address(self):
        return self.connection_manager.handler_to_connection_map[self].address

    def _grab_job(self, ahead=False):
        self._grab_ahead, self._before_grab = ahead, len(self.submits) if ahead else 0
        self.connection_manager.grab_sent_at = time.monotonic()
        old = REFUSED.has(self._address(), "GRAB_JOB_UNIQ")
        self._grab_sent = GEARMAN_COMMAND_GRAB_JOB if old else GEARMAN_COMMAND_GRAB_JOB_UNIQ
        self._queue(self._grab_sent)

    def _sleep(self):
        self._queue(GEARMAN_COMMAND_PRE_SLEEP)

    def _queue(self, cmd_type):
        self.connection_manager.handler_to_connection_map[self].queue_packet(cmd_type)

    def _echo(self):
        """ECHO_REQ: its ECHO_RES says the server has handled everything sent before it."""
        self._queue(GEARMAN_COMMAND_ECHO_REQ)

    def recv_no_job(self):
        self._grab_ahead = False
        self.connection_manager.note_grab(empty=True)
        return super().recv_no_job()

    def recv_job_assign_uniq(self, job_handle, task, unique, data):
        manager = self.connection_manager
        self._grab_ahead = False
        manager.note_grab(empty=False)
        if not manager.check_job_lock(self):
            raise gerrors.InvalidWorkerState("received a job we did not ask for")
        job = manager.create_job(self, job_handle, task, unique, data)
        job.connection_manager_handler = self
        job.publications, job.grabbed_ahead = (), False  # submits held for its answer
        manager.serve_job(self, job)
        return True

    def recv_job_assign(self, job_handle, task, data):
        """A job grabbed with GRAB_JOB (a server without GRAB_JOB_UNIQ): no unique key."""
        return self.recv_job_assign_uniq(job_handle, task, None, data)

    def recv_error(self, error_code, error_text):
        """An ERROR never leaves this connection holding the job lock: a refused
        GRAB_JOB_UNIQ is asked again as GRAB_JOB (remembered for the server); a refused
        WORK_DATA is remembered (failure details then go as WORK_EXCEPTION, which such a
        server relays only to clients that asked for exceptions, before the WORK_FAIL)."""
        address, manager = self._address(), self.connection_manager
        if self.submits and (not self._grab_ahead or self._before_grab):  # in order sent
            self._before_grab = max(0, self._before_grab - 1)
            self.submits.popleft().lost(f"gearmand {address} refused it: {error_code}: "
                                        f"{error_text}")
            return True
        self._grab_ahead = False
        refused = refused_command(error_text)
        if refused in ("work_data", "work_warning"):
            REFUSED.note(address, "WORK_DATA", "failure details go as WORK_EXCEPTION")
            return True
        waiting = manager.check_job_lock(self)  # for the answer to a grab
        if waiting and refused in ("", "grab_job_uniq", "grab_job"):
            if self._grab_sent == GEARMAN_COMMAND_GRAB_JOB_UNIQ:
                REFUSED.note(address, "GRAB_JOB_UNIQ",
                             "grabbing with GRAB_JOB (raw jobs get the handle as job id)")
                # a server that old has no WORK_DATA either (the Perl job server)
                REFUSED.note(address, "WORK_DATA", "failure details go as WORK_EXCEPTION")
                self._grab_job()
                return True
            log.error("gearmand %s refused a grab: %s: %s", address, error_code, error_text)
            self._release_job_lock()
            self._sleep()
            return True
        log.error("gearmand %s sent ERROR %s: %s", address, error_code, error_text)
        return True


class WireWorker(PollMixin, GearmanWorker):
    """One worker connection set (one per thread): survives errors, reconnects, stops."""

    command_handler_class = WireWorkerHandler

    def __init__(self, servers, client_id=None, max_packet=None, dead_after=None):
        super().__init__(host_list=[_pair(s) for s in servers])
        self.attach_servers(servers)
        for conn in self.connection_list:  # a job over it is dropped as it arrives
            conn.max_packet = max_packet
            conn.dead_after = dead_after  # a server that vanished: a failed connection
            if conn.tls is None:
                conn.connect_timeout = WORKER_CONNECT_TIMEOUT
        self._stopping = threading.Event()
        self._retry_at = {}
        self._skip_direct, self._skip_next, self._direct_pending = 0, 1, False
        self._quiet_since, self._wake_turn = time.monotonic(), 0
        self.grab_sent_at = time.monotonic()
        self.busy = False
        #: The job whose callback runs, until its answer is queued (by this thread, or by
        #: another through answer_elsewhere while the callback hangs).
        self._unanswered = None
        self._answer_lock = threading.Lock()
        if client_id:
            self.set_client_id(client_id)

    @property
    def job_in_hand(self):
        """The job whose callback runs now (None if none, or if it was taken over)."""
        job = self._unanswered
        return None if job is None or job is _TAKEN else job

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
                self._after_poll(live, bool(readable))
        finally:
            self.shutdown()

    def _after_poll(self, live, active):
        """Called after every poll of the connections (``active``: some were readable)."""
        now = time.monotonic()
        self._drop_stuck_grab(now)
        self._wake_if_quiet(live, active, now)

    def _drop_stuck_grab(self, now):
        """A grab the server has not even received (its TCP has not acknowledged it: the
        link is down) holds the job lock, so no other server's job is taken: after
        STUCK_GRAB seconds the connection is dropped (a reset: the grab is never
        delivered later) and made again with backoff, and the other servers are served."""
        holder = self.command_handler_holding_job_lock
        if holder is None or now - self.grab_sent_at < STUCK_GRAB:
            return
        conn = self.handler_to_connection_map.get(holder)
        if conn is None or not conn.connected or unacknowledged(conn) <= 0:
            return
        log.warning("gearmand %s has not received a grab sent %.1fs ago (the link may be "
                    "down): dropping the connection; the other servers are served",
                    conn.address, now - self.grab_sent_at)
        abort_socket(conn)
        self.handle_error(conn)

    def _wake_if_quiet(self, live, active, now):
        """After DUE_POLL quiet seconds, ask one server (in turn) for a job as if it had
        sent NOOP, so a delayed job that came due is taken within about a second."""
        if active:
            self._quiet_since = now
            return
        if now - self._quiet_since < DUE_POLL or self.command_handler_holding_job_lock:
            return
        self._quiet_since = now
        conn = live[self._wake_turn % len(live)]
        self._wake_turn += 1
        handler = self.connection_to_handler_map.get(conn)
        if handler is not None and conn.connected:
            handler.recv_noop()
            self._write_now([conn])

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
            due, failures = self._retry_at.get(conn, (0.0, 0))
            if now < due:
                continue
            try:
                self.establish_connection(conn)
            except gerrors.ConnectionError as err:
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

    def _seconds_to_next_try(self):
        now = time.monotonic()
        waits = [due - now for due, _ in self._retry_at.values()]
        return max(0.01, min(waits, default=RECONNECT_MIN))

    def handle_error(self, current_connection):
        if current_connection.connected or current_connection in self.connection_to_handler_map:
            log.warning("gearmand %s: connection lost", current_connection.address)
        self._retry_at.setdefault(current_connection, (time.monotonic(), 0))
        super().handle_error(current_connection)

    # -- jobs
    def serve_job(self, handler, job):
        """One job, start to end, in order: run the callback and queue its answer; queue
        the next request (GRAB_JOB at once while that keeps finding work, else release the
        job lock and PRE_SLEEP until gearmand says NOOP); write both in one send. An answer
        with submits before it (a result to publish) goes after the grab: gearmand hands out
        the next job first, and files the result while this thread runs that job (measured:
        background jobs with a result channel 0.70-0.78 -> 0.80-0.89 of those without)."""
        self.on_job_execute(job)
        if not job.grabbed_ahead:  # else the grab went out with its answer
            if self.grab_directly():
                handler._grab_job()
            else:
                handler._release_job_lock()
                handler._sleep()
        self.send_answer(job)

    def send_answer(self, job):
        """Write the job's queued answer (and what was queued after it) to its socket."""
        try:
            job.connection.send_data_to_socket()
            if job.connection.writable():  # the socket did not take it all
                self.wait_until_updates_sent([job])
        except (gerrors.ConnectionError, gerrors.ServerUnavailable) as err:
            log.error("job %s (%s): result not delivered, gearmand %s went away: %s",
                      job.unique, job.handle, job.connection.address, err)
            self.handle_error(job.connection)  # what was submitted on it is reported lost

    def report_progress(self, job, numerator, denominator) -> bool:
        """Send WORK_STATUS for a running job; False (and nothing raised) if the job's
        server went away: progress is best effort, the job goes on."""
        try:
            self.send_job_status(job, numerator, denominator, poll_timeout=1.0)
            return True
        except (gerrors.ConnectionError, gerrors.ServerUnavailable) as err:
            log.warning("job %s (%s): progress not sent, gearmand %s went away: %s",
                        job.unique, job.handle, job.connection.address, err)
            return False

    def send_output(self, job, data) -> bool:
        """Stream a piece of a running job's output to its sender (WORK_WARNING); False
        (nothing raised) if the job's server went away."""
        try:
            self.send_job_warning(job, data, poll_timeout=1.0)
            return True
        except (gerrors.ConnectionError, gerrors.ServerUnavailable) as err:
            log.warning("job %s (%s): output not streamed, gearmand %s went away: %s",
                        job.unique, job.handle, job.connection.address, err)
            return False

    def wait_until_updates_sent(self, multiple_gearman_jobs, poll_timeout=None):
        """Write a job's updates straight to its socket (it is almost always writable);
        poll only for what the socket did not take."""
        connections = {job.connection for job in multiple_gearman_jobs}
        for conn in connections:
            if conn.writable():
                conn.send_commands_to_buffer()
                conn.send_data_to_socket()
        if any(conn.writable() for conn in connections):
            super().wait_until_updates_sent(multiple_gearman_jobs, poll_timeout)

    def on_job_execute(self, current_job):
        """Run the callback; whatever happens, queue the job's answer (``send_answer``
        writes it, with the next request) and keep the thread alive. A job another thread
        answered meanwhile (``answer_elsewhere``) gets no second answer."""
        self.busy = True
        self._unanswered = current_job
        try:
            outcome = self._call(current_job)
            with self._answer_lock:
                if self._unanswered is current_job:
                    self._queue_answer(current_job, outcome, serving=True)
                else:
                    log.info("job %s (%s): its callback returned after the job was answered "
                             "(timeout); its outcome is dropped",
                             current_job.unique, current_job.handle)
        except AbandonJob as why:
            log.warning("job %s (%s): left unanswered for gearmand to requeue: %s",
                        current_job.unique, current_job.handle, why)
            for submit in _publications(current_job):
                submit.lost("the job was abandoned")
            current_job.connection.throw_exception(message="job abandoned")
        finally:
            self._unanswered = None
            self.busy = False
        return True

    def _queue_answer(self, job, outcome, serving=False):
        """Queue the job's held submits, then its answer; ``serving``: from the thread that
        serves the connection, which then sends its next grab ahead of held submits."""
        conn, handle = job.connection, _as_bytes(job.handle)
        held = _publications(job)
        if held:
            if serving and self.grab_directly():
                job.connection_manager_handler._grab_job(ahead=True)
                job.grabbed_ahead = True
            for submit in held:
                _queue_submit(job, submit)
        if isinstance(outcome, JobFailed):
            if outcome.data:
                details = (GEARMAN_COMMAND_WORK_EXCEPTION
                           if REFUSED.has(conn.address, "WORK_DATA")
                           else GEARMAN_COMMAND_WORK_DATA)
                conn.queue_packet(details, handle, _as_bytes(outcome.data))
            conn.queue_packet(GEARMAN_COMMAND_WORK_FAIL, handle)
        else:
            conn.queue_packet(GEARMAN_COMMAND_WORK_COMPLETE, handle, outcome)

    def take_over(self, job) -> bool:
        """From another thread, while this one hangs in ``job``'s callback (a Python task
        past its timeout: a thread cannot be killed): make the job the caller's to answer
        (``answer_taken``); the callback's own answer, if it ever returns, is dropped.
        False if the callback returned first (it answers)."""
        with self._answer_lock:
            if self._unanswered is not job:
                return False
            self._unanswered = _TAKEN
            return True

    def answer_taken(self, job, outcome) -> None:
        """Answer a job taken over with ``outcome`` (bytes, or JobFailed). The hung thread
        writes nothing meanwhile, so the socket is the caller's."""
        with self._answer_lock:
            self._queue_answer(job, outcome if isinstance(outcome, JobFailed)
                               else self.data_encoder.encode(outcome))
            self.send_answer(job)

    def _call(self, job):
        try:
            outcome = self.worker_abilities[job.task](self, job)
            return outcome if isinstance(outcome, JobFailed) else self.data_encoder.encode(outcome)
        except AbandonJob:
            raise
        except Exception as err:  # never let a job end the thread; never WORK_EXCEPTION
            log.exception("job %s on %s: callback failed", job.unique, job.task)
            return JobFailed(f"{type(err).__name__}: {err}".encode("utf-8", "replace"))
