"""What the port hands a worker: a job assigned to it, and the outcomes it answers with."""
from __future__ import annotations

import logging
from typing import Any, Callable

from ..addresses import ServerAddress
from ..errors import ConnectionLost

log = logging.getLogger(__name__)


class JobFailed:
    """Returned by a worker callback to fail a job: ``data`` goes out as WORK_DATA first,
    so the sender (even the C ``gearman`` client) still gets the details."""

    __slots__ = ("data",)

    def __init__(self, data: bytes = b"") -> None:
        self.data = data


class AbandonJob(Exception):
    """Raised by a worker callback to leave a job unanswered: the connection it came on is
    closed, so gearmand hands the job to another worker (used when a stopping worker had
    to kill the command)."""


class Submit:
    """A background job a worker submits on a job's own connection (a result to its
    channel): gearmand queues it before it reads what follows (the job's answer), with no
    round trip to wait for. ``on_lost()`` is called if gearmand refuses it (ERROR) or the
    connection drops before JOB_CREATED (or the job is abandoned before it went out), so
    the caller can keep it elsewhere."""

    __slots__ = ("function", "unique", "data", "on_lost")

    def __init__(self, function: str, unique: str, data: bytes,
                 on_lost: Callable[[str], None] | None = None) -> None:
        self.function, self.unique, self.data, self.on_lost = function, unique, data, on_lost

    def lost(self, why: str) -> None:
        if self.on_lost is not None:
            try:
                self.on_lost(why)
            except Exception:  # a keeper that fails must not end the thread
                log.exception("could not keep %s (%s)", self.function, why)


class Job:
    """A job gearmand assigned to this worker: ``handle``, ``function``, ``unique`` (None
    when grabbed with GRAB_JOB from a server without GRAB_JOB_UNIQ) and ``data`` (bytes;
    :class:`~gearman_frame.wire.packets.Oversized` when it was over the size limit)."""

    __slots__ = ("handle", "function", "unique", "data", "link", "sock", "publications",
                 "grabbed_ahead")

    def __init__(self, link: Any, handle: str, function: str, unique: str | None,
                 data: bytes) -> None:
        self.handle, self.function, self.unique, self.data = handle, function, unique, data
        #: The connection state it came on, and that connection's socket then (a job
        #: can only be answered on the socket it came on).
        self.link, self.sock = link, link.conn.sock
        #: Submits held until its answer is queued (see submit_on).
        self.publications: tuple = ()
        self.grabbed_ahead = False

    @property
    def server(self) -> ServerAddress:
        """The server it came from (its str names it in messages)."""
        return self.link.conn.address

    def gone(self) -> bool:
        """True once the connection it came on is closed or broken: gearmand has handed
        it, or will hand it, to another worker. Asked without reading, from any thread."""
        conn = self.link.conn
        return conn.sock is not self.sock or conn.gone()

    @property
    def answerable(self) -> bool:
        return self.sock is not None and self.link.conn.sock is self.sock

    def __repr__(self) -> str:
        return f"<Job {self.function} {self.unique or self.handle}>"


def submit_on(job: Job, submit: Submit, now: bool = False) -> None:
    """Submit ``submit`` on ``job``'s connection: just before the job's answer (the
    default: held with the job until its answer is queued), or at once (``now``: a notice
    that the job started)."""
    if not now:
        job.publications += (submit,)
        return
    if not job.answerable:
        submit.lost("the connection to gearmand was lost")
        return
    job.link.queue_submit(submit)
    try:
        job.link.conn.flush()
    except ConnectionLost:
        pass  # the serving thread sees the loss, and reports the submit lost
