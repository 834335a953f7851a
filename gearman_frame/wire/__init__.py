"""The wire layer: gearman-frame's one port to gearmand.

Everything in gearman-frame talks to gearmand through this package, and nothing of
python3-gearman leaves it: the library gives the protocol's command numbers and fields
(``packets``); the connections (``connection``), the client's requests (``client``) and
the worker's serving loop (``worker``, ``answers``, ``batch``) are ours. What comes out
are our own values: a :class:`Request` (a job sent, and its answer), a :class:`Job` (a job
assigned to a worker: handle, function, unique, data; answerable, and asked whether its
connection is gone), :class:`JobFailed`, :class:`AbandonJob` and :class:`Submit`.

What this fixes against the library and gearmand 1.1.20:

* payloads are bytes end to end and packet lengths are counted in bytes (the library
  counts characters, truncating 'héllo' to 'héll', and raises UnicodeDecodeError on
  bytes that are not UTF-8);
* reads go into a growing bytearray in 32 KiB chunks (the library's 4 KB reads into
  re-copied bytes take 20+ s for 16 MB);
* polling uses poll(2), which has no FD_SETSIZE limit, and a socket error becomes a
  ConnectionLost on that connection (the library's select() turns any OSError into
  SystemExit, which silently ends a thread);
* a client may resend the same unique key (the library raises KeyError when gearmand
  answers two requests with one handle);
* ERROR packets (QUEUE_FULL, argument too large) fail the pending request instead of
  leaving it PENDING forever;
* uniques over 63 bytes and function names gearmand would drop the connection for are
  refused before they are sent;
* a worker never sends WORK_EXCEPTION, runs a job outside of packet handling, survives
  callbacks that raise or return the wrong type, reconnects with capped backoff when a
  server goes away and comes back, and grabs its next job without a PRE_SLEEP/NOOP round
  trip when it has one server.
"""
from .assignment import AbandonJob, Job, JobFailed, Submit, submit_on
from .client import (JOB_COMPLETE, JOB_CREATED, JOB_FAILED, JOB_PENDING, JOB_REFUSED,
                     JOB_UNKNOWN, PRIORITIES, Request, WireClient)
from .connection import (CONNECT_TIMEOUT, MAX_FUNCTION_BYTES, MAX_UNIQUE_BYTES, READ_CHUNK,
                         Connection, check_request, open_socket)
from .packets import Oversized
from .status import UniqueStatus, status_by_unique
from .worker import RECONNECT_MAX, RECONNECT_MIN, WORKER_POLL_INTERVAL, WireWorker

__all__ = ["AbandonJob", "Job", "JobFailed", "Submit", "submit_on",
           "JOB_COMPLETE", "JOB_CREATED", "JOB_FAILED", "JOB_PENDING", "JOB_REFUSED",
           "JOB_UNKNOWN", "PRIORITIES", "Request", "WireClient",
           "CONNECT_TIMEOUT", "MAX_FUNCTION_BYTES", "MAX_UNIQUE_BYTES", "READ_CHUNK",
           "Connection", "check_request", "open_socket", "Oversized",
           "UniqueStatus", "status_by_unique",
           "RECONNECT_MAX", "RECONNECT_MIN", "WORKER_POLL_INTERVAL", "WireWorker"]
