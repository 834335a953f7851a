"""The wire layer: python3-gearman, subclassed where it breaks.

Everything in gearman-frame talks to gearmand through this package. The library keeps
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
from .client import (JOB_COMPLETE, JOB_CREATED, JOB_FAILED, JOB_REFUSED,
                     JOB_UNKNOWN, PRIORITIES, WireClient, WireClientHandler, WireJobRequest)
from .connection import (CONNECT_TIMEOUT, MAX_FUNCTION_BYTES, MAX_UNIQUE_BYTES,
                         READ_CHUNK, BytesEncoder, Oversized, PollMixin, WireConnection,
                         check_request, connection_gone, open_socket)
from .worker import (RECONNECT_MAX, RECONNECT_MIN, WORKER_POLL_INTERVAL, Submit, submit_on,
                     AbandonJob, JobFailed, WireWorker, WireWorkerHandler)
from .status import UniqueStatus, status_by_unique

__all__ = ["JOB_COMPLETE", "JOB_CREATED", "JOB_FAILED", "JOB_REFUSED", "JOB_UNKNOWN", "PRIORITIES",
           "WireClient", "WireClientHandler", "WireJobRequest", "CONNECT_TIMEOUT",
           "MAX_FUNCTION_BYTES", "MAX_UNIQUE_BYTES", "READ_CHUNK", "BytesEncoder", "Oversized",
           "PollMixin", "WireConnection", "check_request", "connection_gone", "open_socket", "RECONNECT_MAX", "RECONNECT_MIN",
           "WORKER_POLL_INTERVAL", "Submit", "submit_on", "AbandonJob", "JobFailed", "WireWorker", "WireWorkerHandler",
           "UniqueStatus", "status_by_unique"]
