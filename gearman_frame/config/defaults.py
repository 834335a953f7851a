"""Every default and bound of the config, written once, each with what it is and its unit."""
from __future__ import annotations

import re

from ..addresses import DEFAULT_PORT, ServerAddress
from ..defaults import DEFAULT_CONFIG_FILE, DEFAULT_MAX_AGE, DEFAULT_RESULT_STORE, ENV_CONFIG

__all__ = ["DEFAULT_CONFIG_FILE", "DEFAULT_MAX_AGE", "DEFAULT_RESULT_STORE", "ENV_CONFIG",
           "ENV_SERVERS", "DEFAULT_SERVERS", "DEFAULT_CLIENT_TIMEOUT", "DEFAULT_RESEND",
           "DEFAULT_OUTBOX", "DEFAULT_RESULT_TTL", "DEFAULT_WORKER_NAME", "DEFAULT_THREADS",
           "MAX_PROCESSES", "POOL_NAME", "DEFAULT_MAX_PAYLOAD", "DEFAULT_MAX_KWARGS",
           "DEFAULT_OUTPUT_LIMIT", "MAX_THREADS", "DEFAULT_GRACE", "DEFAULT_STARTUP_TIMEOUT",
           "DEFAULT_PROGRESS_INTERVAL", "DEFAULT_FUNCTION_TIMEOUT", "DEFAULT_JOB_RETRIES",
           "DEFAULT_DEAD_SERVER_AFTER", "DEFAULT_SCHEDULER_LEAD", "MAX_FUNCTION_NAME_BYTES",
           "RESERVED_PREFIX", "LOG_LEVELS", "LOG_FORMATS", "DEFAULT_STORE_URL", "DEFAULT_LEASE",
           "DEFAULT_DEDUP_TTL", "DEFAULT_REQUEUE_AFTER"]

#: Environment variable overriding ``servers`` (comma-separated ``host:port``).
ENV_SERVERS = "GEARMAN_FRAME_SERVERS"

#: Job servers used when the config names none: a local gearmand.
DEFAULT_SERVERS = (ServerAddress("127.0.0.1", DEFAULT_PORT),)
#: Seconds a foreground submit waits for its result before resending.
DEFAULT_CLIENT_TIMEOUT = 30.0
#: Resends of one job (same unique id) after a timeout or a lost connection.
DEFAULT_RESEND = 3
#: SQLite file holding background jobs no server accepted (relative to the config file).
DEFAULT_OUTBOX = "var/outbox.sqlite"
#: How long sendjob keeps the results it received (seconds: 7 days).
DEFAULT_RESULT_TTL = 7 * 86400.0
#: Worker name template; ``{hostname}`` and ``{pid}`` are filled in at start.
DEFAULT_WORKER_NAME = "{hostname}"
#: Worker threads per ``runworkers`` process.
DEFAULT_THREADS = 4
#: Most worker processes one supervisor runs.
MAX_PROCESSES = 256
#: Names of pools and scheduler groups.
POOL_NAME = re.compile(r"[A-Za-z0-9_]{1,40}")
#: Largest job payload a worker takes (bytes); a larger one is read past as it arrives
#: and refused, so it never grows the worker's memory.
DEFAULT_MAX_PAYLOAD = 64 * 1024 * 1024
#: Most kwargs a job may have (an envelope with many more strings is refused before it
#: is decoded).
DEFAULT_MAX_KWARGS = 10_000
#: Bytes of a command's output kept per stream (a raw job's stdout: its first bytes; a
#: JSON job's: its last, at most TAIL_BYTES); the rest is counted and dropped.
DEFAULT_OUTPUT_LIMIT = 1024 * 1024
#: Most worker threads one process may have (each holds a connection per server).
MAX_THREADS = 1024
#: Seconds a graceful stop lets running commands finish before killing them.
DEFAULT_GRACE = 30.0
#: Seconds ``runworkers`` waits for a first server before exiting with code 3.
DEFAULT_STARTUP_TIMEOUT = 30.0
#: Seconds between two WORK_STATUS progress reports while a command runs.
DEFAULT_PROGRESS_INTERVAL = 5.0
#: Seconds a function's command may run before its process group is killed.
DEFAULT_FUNCTION_TIMEOUT = 300.0
#: Times gearmand hands out a job whose worker vanished while holding it (died, or left it
#: unanswered) before it drops the job: bounds a job that kills its worker every time.
DEFAULT_JOB_RETRIES = 10
#: Seconds a worker gives a silent server before it drops the connection (keepalive).
DEFAULT_DEAD_SERVER_AFTER = 15.0
#: Seconds ahead a scheduler queues occurrences (gearmand holds them until their time).
DEFAULT_SCHEDULER_LEAD = 20.0
#: Largest function name gearmand handles (it drops the connection at 8192 bytes).
MAX_FUNCTION_NAME_BYTES = 8191
#: Function-name prefix reserved for gearman-frame's own queues (control, dead letters).
RESERVED_PREFIX = "__"

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")

#: ``store.url``: the job ledger ("off": none, each job runs at least once).
DEFAULT_STORE_URL = "off"
#: Seconds a claim's lease lasts without renewal (renewed every third of it while a job runs).
DEFAULT_LEASE = 30.0
#: Seconds a job sent with an idempotency key is answered from its one run.
DEFAULT_DEDUP_TTL = 24 * 3600.0
#: Seconds a background job may go unclaimed before the reaper resubmits it elsewhere.
DEFAULT_REQUEUE_AFTER = 300.0
