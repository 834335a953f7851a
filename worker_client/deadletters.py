"""Dead letters that gearmand would not take wait on disk until it does.

A background job that failed every attempt goes to ``__dead__.FUNCTION``. When no server
takes the dead letter (every server down, or the dead-letter queue at its ``maxqueue``),
answering the job would drop it and leaving it unanswered makes gearmand hand it out again
at once (a failing job then ran thousands of times a minute). So the dead letter is
written to a spool folder (a file each, owner-only, synced, renamed into place) and the
job is answered; a publisher thread sends the spooled letters as soon as a server takes
them, and deletes each file only after gearmand queued it. The spool is shared by every
worker that uses the same config folder: a letter left by a worker that died is sent by
the next one, and a file is locked while it is being sent, so two workers never send it
at the same time.
"""
from __future__ import annotations

import fcntl
import logging
import os
import threading
from typing import Any

from gearman_frame.envelope import dumps, loads, parse_request
from gearman_frame.errors import EnvelopeError, FrameError
from gearman_frame.files import private_folder, write_private_file
from gearman_frame.retry import RetryPolicy
from gearman_frame.wire import WireClient

log = logging.getLogger(__name__)

#: Seconds between two attempts to send what waits in the spool: 1, doubling while every
#: attempt fails, at most 30.
SPOOL_BACKOFF = RetryPolicy(delay=1.0, backoff=2.0, max_delay=30.0)
#: Seconds one send of a spooled letter may take.
SEND_TIMEOUT = 10.0
SUFFIX = ".dead"


class DeadLetterSpool:
    """A folder of dead letters waiting for a server to take them."""

    def __init__(self, path: str):
        self.path = path
        self.wake = threading.Event()

    def keep(self, function: str, unique: str, record: bytes,
             epoch: int | None = None) -> str:
        """Write one dead letter to the spool (synced before this returns); its file.
        ``epoch``: a job sent back to its function later is held by gearmand until then."""
        private_folder(self.path)
        name = f"{os.urandom(8).hex()}{SUFFIX}"
        target = os.path.join(self.path, name)
        letter: dict[str, object] = {"function": function, "unique": unique,
                                     "record": bytes(record)}
        if epoch is not None:
            letter["epoch"] = epoch
        write_private_file(target, dumps(letter))
        self.wake.set()
        return target

    def waiting(self) -> list[str]:
        """The spooled files, oldest first."""
        try:
            names = [n for n in os.listdir(self.path) if n.endswith(SUFFIX)]
        except FileNotFoundError:
            return []
        paths = [os.path.join(self.path, n) for n in names]
        return sorted(paths, key=_mtime)

    def send_waiting(self, client: WireClient) -> tuple[int, int]:
        """Send every spooled letter; stop at the first one no server takes. Returns
        ``(sent, still waiting)``."""
        sent = 0
        paths = self.waiting()
        for path in paths:
            outcome = self._send_one(client, path)
            if outcome is False:
                break
            sent += outcome is True
        return sent, len(self.waiting())

    def _send_one(self, client, path):
        """True: sent and deleted; None: gone or being sent by another worker; False: no
        server took it."""
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            return None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None
            if not os.path.exists(path):  # sent by another worker before we locked it
                return None
            try:
                letter: Any = loads(handle.read())
                function, unique, record = letter["function"], letter["unique"], letter["record"]
            except (EnvelopeError, KeyError, TypeError) as err:
                _set_aside(path, f"unreadable spooled dead letter: {err}")
                return None
            try:
                client.submit(function, record, unique=unique, background=True,
                              timeout=SEND_TIMEOUT, epoch=letter.get("epoch"))
            except FrameError as err:
                log.info("spooled dead letter %s for %s still waits: %s", unique, function, err)
                return False
            os.unlink(path)
            log.warning("job %s: spooled dead letter sent to %s", unique, function)
            return True


def requeue_payload(data: bytes, at: float, keyring, function: str) -> bytes:
    """A failed job's payload to send back to ``function`` at ``at``: an envelope gets
    ``at`` (and a signature dated from it, with a key), a raw payload goes as it is."""
    try:
        request, _raw = parse_request(bytes(data))
    except EnvelopeError:
        request = None
    if request is None or request.fields is None:
        return bytes(data)
    fields = {k: v for k, v in request.fields.items() if k not in ("sig", "ts", "kid")}
    fields["at"] = at
    return dumps(fields) if keyring is None else keyring.sign(function, fields)


class SpoolSender(threading.Thread):
    """Sends what waits in a spool, retrying with backoff, until stopped."""

    def __init__(self, spool: DeadLetterSpool, servers):
        super().__init__(name="dead-letter-spool", daemon=True)
        self.spool = spool
        self.servers = servers
        self.stopped = threading.Event()

    def run(self):
        client, failures = None, 0
        while not self.stopped.is_set():
            # woken by a new letter, a failed try does not lengthen the wait: a burst of
            # letters refused at once (a full queue) must not put the next try 30 s off
            woken = self.spool.wake.wait(SPOOL_BACKOFF.delay_after(failures + 1))
            self.spool.wake.clear()
            if self.stopped.is_set() or not self.spool.waiting():
                failures = 0
                continue
            try:
                client = client or WireClient(self.servers)
                _sent, left = self.spool.send_waiting(client)
            except Exception:  # never let housekeeping end; the files stay for next time
                log.exception("sending spooled dead letters failed")
                client, left = None, 1
            if not left:
                failures = 0
            elif not woken:
                failures += 1

    def stop(self):
        self.stopped.set()
        self.spool.wake.set()


def _mtime(path):
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _set_aside(path, why):
    aside = path + ".bad"
    os.replace(path, aside)
    log.error("%s: %s; moved to %s (kept for a person to read)", path, why, aside)
