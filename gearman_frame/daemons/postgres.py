"""A throwaway PostgreSQL cluster on a loopback port: for the tests, the bench and the demo
(a fleet's ledger is the operators' own PostgreSQL; this starts nothing in production).

Debian's binaries (``/usr/lib/postgresql/VERSION/bin``); ``initdb`` and ``pg_ctl`` run as
the ``postgres`` user when we are root (PostgreSQL refuses to run as root), in a folder
that user owns. Local connections are trusted: the cluster listens on loopback only and
lives as long as the run that made it.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from ..processes import is_alive, send_signal, wait_until
from .base import accepts

#: Seconds to wait for the cluster to accept connections.
START_TIMEOUT = 30.0
DATABASE = "gearman_frame"


def find_bin(name: str) -> str | None:
    """``name`` (initdb, pg_ctl, postgres) of the newest PostgreSQL installed, or None."""
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                     key=lambda f: int(f.split("/")[-2]) if f.split("/")[-2].isdigit() else 0)
    for folder in reversed(folders):
        if os.access(os.path.join(folder, name), os.X_OK):
            return os.path.join(folder, name)
    return shutil.which(name)


class PostgresCluster:
    """One cluster: ``start()``, ``url``, ``stop()``, and the faults tests need (``kill``,
    ``freeze``/``thaw``, ``restart``)."""

    def __init__(self, port: int, host: str = "127.0.0.1", folder: str | None = None):
        self.host, self.port = host, port
        self.folder = Path(folder or tempfile.mkdtemp(prefix="gf-postgres-"))
        self.data = self.folder / "data"
        self.user = "postgres"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            entry = pwd.getpwnam(self.user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
            os.chmod(self.folder, 0o700)
        else:
            self.user = pwd.getpwuid(os.geteuid()).pw_name

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{DATABASE}"

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        command = list(argv)
        if self._as_postgres:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True,
                              cwd=self.folder)

    def _binary(self, name: str) -> str:
        path = find_bin(name)
        if path is None:
            raise FileNotFoundError(f"PostgreSQL's {name} is not installed (Debian: "
                                    "apt-get install postgresql)")
        return path

    def start(self) -> PostgresCluster:
        """initdb (first time), start on the port, create the database."""
        if not (self.data / "PG_VERSION").exists():
            self._run(self._binary("initdb"), "-D", str(self.data), "-A", "trust",
                      "-U", self.user, "--no-sync", "-E", "UTF8")
        try:
            self._pg_ctl("start")
        except subprocess.CalledProcessError as err:
            log = self.folder / "log"
            raise RuntimeError(f"postgres on {self.host}:{self.port} did not start: "
                               f"{err.stderr.strip()} "
                               f"{log.read_text()[-1000:] if log.exists() else ''}") from err
        if not wait_until(lambda: accepts(self.host, self.port), START_TIMEOUT):
            raise RuntimeError(f"postgres on {self.host}:{self.port} did not start: "
                               f"{(self.folder / 'log').read_text()[-2000:]}")
        created = self._run(self._binary("createdb"), "-h", self.host, "-p", str(self.port),
                            "-U", self.user, DATABASE, check=False)
        if created.returncode and "already exists" not in created.stderr:
            raise RuntimeError(f"createdb failed: {created.stderr.strip()}")
        return self

    def _pg_ctl(self, action: str) -> None:
        options = (f"-p {self.port} -c listen_addresses={self.host} "
                   f"-c unix_socket_directories={self.folder} -c fsync=off "
                   "-c max_connections=200")
        argv = [self._binary("pg_ctl"), "-D", str(self.data), "-l",
                str(self.folder / "log"), "-w", "-t", str(int(START_TIMEOUT))]
        if action == "start":
            argv += ["-o", options, "start"]
        else:
            argv += ["-m", "fast", "stop"]
        self._run(*argv)

    @property
    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """Stop it (fast shutdown: connections are cut); a no-op if it is not running."""
        if self.pid is not None and is_alive(self.pid):
            self._run(self._binary("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                      "stop", check=False)

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends (a lost database host)."""
        pid = self.pid
        if pid is not None:
            subprocess.run(["pkill", "-KILL", "-P", str(pid)], check=False)
            send_signal(pid, signal.SIGKILL)
            wait_until(lambda: not is_alive(pid), 10)
            (self.data / "postmaster.pid").unlink(missing_ok=True)

    def restart(self) -> None:
        self.start()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def wait_for_port_free(host: str, port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not accepts(host, port):
            return True
        time.sleep(0.05)
    return False
