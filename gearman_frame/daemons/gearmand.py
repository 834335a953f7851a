"""Local gearmand control: start, stop and inspect a gearmand on one port.

This is the embedded default behind ``runadmin server``, the demo and the test fixtures.
The data dir holds the pidfile, the log and (by default) the SQLite persistent queue,
written on every change (``-q libsqlite3``; never ``--store-queue-on-shutdown``, with which
a SIGKILL loses every queued job). A stop only signals a process that the pidfile names
*and* whose command line is a gearmand on this port and data dir, so a stale pidfile
whose pid was reused is never signalled.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..addresses import DEFAULT_PORT
from ..errors import EXIT_UNREACHABLE, EXIT_USAGE, ServerControlError
from ..files import private_folder
from ..processes import cmdline, is_alive, send_signal, wait_until
from ..ledger.backends import shown
from .base import STOP_TIMEOUT, PidfileDaemon

log = logging.getLogger(__name__)

#: Seconds to wait for a started gearmand to accept connections.
START_TIMEOUT = 10.0
QUEUE_SQLITE = "sqlite"
QUEUE_BUILTIN = "builtin"


#: Queues another gearmand can take over (a standby started after the first is dead).
SHARED_QUEUES = ("postgresql://", "postgres://", "redis://")
#: The table of a PostgreSQL queue (``?table=NAME`` in the URL names another).
QUEUE_TABLE = "gearmand_queue"


def shared_queue_args(url: str) -> list[str]:
    """gearmand's flags for a PostgreSQL (``-q Postgres``; libpq takes the URL as its
    conninfo) or Redis (``-q redis``) queue. gearmand replays such a queue only when it
    starts: never run two live gearmands on one (both would run its jobs)."""
    parts = urlsplit(url)
    if parts.scheme == "redis":
        argv = ["--queue-type", "redis", "--redis-server", parts.hostname or "127.0.0.1",
                "--redis-port", str(parts.port or 6379)]
        return argv + (["--redis-password", parts.password] if parts.password else [])
    query = dict(parse_qsl(parts.query))
    table = query.pop("table", QUEUE_TABLE)
    conninfo = urlunsplit(parts._replace(query=urlencode(query)))
    return ["--queue-type", "Postgres", "--libpq-conninfo", conninfo, "--libpq-table", table]


def find_gearmand() -> str | None:
    """Path of the C gearmand (Debian puts it in /usr/sbin), or None. Debian's
    ``gearman-server`` installs the Perl job server as ``gearmand`` too, a script that
    ignores our flags: a binary is preferred wherever it is; a script is returned only
    when it is all there is, for :meth:`LocalGearmand.command` to name it."""
    path = os.environ.get("PATH", os.defpath) + ":/usr/sbin:/usr/local/sbin"
    found = []
    for folder in path.split(":"):
        candidate = shutil.which("gearmand", path=folder) if folder else None
        if candidate and candidate not in found:
            found.append(candidate)
    return next((c for c in found if is_c_gearmand(c)), found[0] if found else None)


def is_c_gearmand(path: str) -> bool:
    """True if ``path`` is a compiled program (the C gearmand), not a script."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"\x7fELF"
    except OSError:
        return False


def port_is_free(host: str, port: int) -> bool:
    """True if nothing listens on host:port (checked by binding it, as gearmand does, with
    SO_REUSEADDR, so connections of a killed server in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just found free on ``host`` (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def accepts_connections(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if gearmand answers the admin 'version' command on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"version\n")
            return sock.recv(64).startswith(b"OK")
    except OSError:
        return False


@dataclass
class ServerStatus:
    """What ``status`` reports about a local gearmand."""

    running: bool
    pid: int | None
    host: str
    port: int
    data_dir: str
    queue: str
    stale_pidfile: bool = False

    def describe(self) -> str:
        if self.running:
            return (f"gearmand running: pid {self.pid}, {self.host}:{self.port}, "
                    f"queue {shown(self.queue)}, data {self.data_dir}")
        extra = " (removed a stale pidfile)" if self.stale_pidfile else ""
        return f"gearmand not running on {self.host}:{self.port}{extra}"


#: TCP keepalive for every connection gearmand accepts: a worker host that vanished
#: (no FIN, no RST) is noticed after idle + interval * count = 5 + 2 * 5 = 15 s, and the job
#: it held is handed to another worker (measured in the fleet tests).
KEEPALIVE = {"idle": 5, "interval": 2, "count": 5}


class LocalGearmand(PidfileDaemon):
    """One gearmand on ``host:port`` with its files in ``data_dir``."""

    kind = "gearmand"

    def __init__(self, data_dir: str | os.PathLike, port: int = DEFAULT_PORT,
                 host: str = "127.0.0.1", queue: str = QUEUE_SQLITE,
                 extra_args: Iterable[str] = (), binary: str | None = None,
                 job_retries: int | None = None) -> None:
        if queue not in (QUEUE_SQLITE, QUEUE_BUILTIN) and not queue.startswith(SHARED_QUEUES):
            raise ServerControlError(f"queue must be '{QUEUE_SQLITE}', '{QUEUE_BUILTIN}', "
                                     f"postgresql://... or redis://HOST:PORT, got {queue!r}",
                                     EXIT_USAGE)
        self.data_dir = self.folder = Path(data_dir).resolve()
        self.port = int(port)
        self.host = host
        self.queue = queue
        self.extra_args = tuple(extra_args)
        self.job_retries = job_retries
        self.binary = binary if binary is not None else find_gearmand()
        self.process: subprocess.Popen | None = None

    @property
    def errfile(self) -> Path:
        """gearmand's own stdout/stderr (start-up errors land here, not in the log)."""
        return self.data_dir / f"gearmand-{self.port}.err"

    @property
    def queue_file(self) -> Path:
        return self.data_dir / f"queue-{self.port}.sqlite"

    def command(self) -> list[str]:
        binary = self.binary
        if not binary or not os.access(binary, os.X_OK):
            raise ServerControlError(
                "gearmand not found: install the 'gearman-job-server' package "
                "(apt-get install gearman-job-server)", EXIT_UNREACHABLE)
        if not is_c_gearmand(binary):
            raise ServerControlError(
                f"{binary} is not the C gearmand (it is a script: the Perl job server of "
                "'gearman-server'?); install 'gearman-job-server', or put the folder of "
                "its gearmand first on PATH", EXIT_UNREACHABLE)
        argv = [binary, "--listen", self.host, "--port", str(self.port),
                "--pid-file", str(self.pidfile), "--log-file", str(self.logfile),
                "--verbose", "WARNING"]
        if self.queue == QUEUE_SQLITE:
            argv += ["--queue-type", "libsqlite3", "--libsqlite3-db", str(self.queue_file)]
        elif self.queue != QUEUE_BUILTIN:
            argv += shared_queue_args(self.queue)
        if self.job_retries:
            argv += ["--job-retries", str(self.job_retries)]
        argv += ["--keepalive", *(f"--keepalive-{k}={v}" for k, v in KEEPALIVE.items())]
        return argv + list(self.extra_args)

    def _is_ours(self, pid: int) -> bool:
        argv = cmdline(pid)
        return (bool(argv) and os.path.basename(argv[0]) == b"gearmand"
                and str(self.pidfile).encode() in argv and is_alive(pid))

    # -- control
    def status(self) -> ServerStatus:
        had_pidfile = self.pidfile.exists()
        pid = self.running_pid()
        return ServerStatus(running=pid is not None, pid=pid, host=self.host, port=self.port,
                            data_dir=str(self.data_dir), queue=self.queue,
                            stale_pidfile=had_pidfile and pid is None)

    def start(self, timeout: float = START_TIMEOUT) -> int:
        """Start gearmand and wait until it answers; return its pid."""
        pid = self.running_pid()
        if pid is not None:
            raise ServerControlError(f"gearmand already running on {self.address} (pid {pid})",
                                     EXIT_USAGE)
        if not port_is_free(self.host, self.port):
            raise ServerControlError(f"cannot start gearmand: {self.address} is already in use "
                                     "by another process", EXIT_USAGE)
        private_folder(self.data_dir)
        err = os.open(self.errfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:  # umask 077: the queue and the log hold job data, so they are owner-only
            process = self.process = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                start_new_session=True, umask=0o077)
        finally:
            os.close(err)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServerControlError(
                    f"gearmand on {self.address} exited at start (code "
                    f"{process.returncode}): {self._failure_text()}", EXIT_UNREACHABLE)
            if accepts_connections(self.host, self.port, timeout=0.2):
                self._wait_for_pidfile(process.pid, deadline)
                log.info("gearmand %s: started, pid %s, queue %s", self.address,
                         process.pid, self.queue)
                return process.pid
            time.sleep(0.02)
        send_signal(process.pid, signal.SIGKILL)
        raise ServerControlError(f"gearmand on {self.address} did not answer within {timeout}s",
                                 EXIT_UNREACHABLE)

    def _wait_for_pidfile(self, pid: int, deadline: float) -> None:
        while self._read_pid() != pid and time.monotonic() < deadline:
            time.sleep(0.01)
        if self._read_pid() != pid:
            self.pidfile.write_text(f"{pid}\n")
        self.pidfile.chmod(0o644)  # a pid is no secret; monitoring may read it

    def _failure_text(self) -> str:
        text = ""
        for path in (self.errfile, self.logfile):
            if path.exists():
                text += path.read_text(errors="replace")[-500:]
        return " ".join(text.split())[-300:] or "no message"

    def kill(self) -> int | None:
        """SIGKILL our gearmand, as a crash would (fault tests); the pidfile stays."""
        pid = self.running_pid()
        if pid is not None:
            send_signal(pid, signal.SIGKILL)
            self._wait_exit(pid, STOP_TIMEOUT)
        return pid

    def signal(self, sig: int) -> None:
        """Send ``sig`` (e.g. SIGSTOP/SIGCONT) to our gearmand."""
        pid = self.running_pid()
        if pid is None:
            raise ServerControlError(f"gearmand not running on {self.address}")
        send_signal(pid, sig)

    def _exited(self, pid: int) -> bool:
        if self.process is not None and self.process.pid == pid:
            return self.process.poll() is not None
        return not is_alive(pid)

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        """True once ``pid`` exited (within ``timeout``)."""
        return wait_until(lambda: self._exited(pid), timeout)
