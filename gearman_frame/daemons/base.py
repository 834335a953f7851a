"""What every local daemon we start has in common: it is found again by its pidfile, and
only a process whose command line is ours is ever signalled (a stale pidfile whose pid
was reused is removed, never acted on)."""
from __future__ import annotations

import logging
import signal
import socket
from pathlib import Path

from ..processes import escalate, is_alive, send_signal, wait_until

log = logging.getLogger(__name__)

#: Seconds to wait for a daemon to exit after SIGTERM before SIGKILL.
STOP_TIMEOUT = 10.0


class PidfileDaemon:
    """A daemon on ``host:port`` whose files (``KIND-PORT.pid``, ``KIND-PORT.log``) are in
    ``folder``. Subclasses say what it is (``kind``) and how to know it is theirs."""

    kind = "daemon"
    folder: Path
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pidfile(self) -> Path:
        return self.folder / f"{self.kind}-{self.port}.pid"

    @property
    def logfile(self) -> Path:
        return self.folder / f"{self.kind}-{self.port}.log"

    def _read_pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def _is_ours(self, pid: int) -> bool:
        raise NotImplementedError

    def running_pid(self) -> int | None:
        """The pid of our daemon if it runs; a stale pidfile is removed."""
        pid = self._read_pid()
        if pid is None:
            return None
        if self._is_ours(pid):
            return pid
        log.warning("%s %s: removing stale pidfile %s (pid %s is not ours)", self.kind,
                    self.address, self.pidfile, pid)
        self.pidfile.unlink(missing_ok=True)
        return None

    def _exited(self, pid: int) -> bool:
        return not is_alive(pid)

    def stop(self, timeout: float = STOP_TIMEOUT, sig: int = signal.SIGTERM) -> bool:
        """Stop our daemon (``sig``, SIGKILL after ``timeout``); False if none ran."""
        pid = self.running_pid()
        if pid is None:
            return False
        if not escalate(lambda s: send_signal(pid, s), lambda: self._exited(pid), timeout,
                        first=sig):
            log.warning("%s %s: pid %s ignored %s for %ss, killed", self.kind, self.address,
                        pid, signal.Signals(sig).name, timeout)
            wait_until(lambda: self._exited(pid), timeout)
        self.pidfile.unlink(missing_ok=True)
        log.info("%s %s: stopped (pid %s)", self.kind, self.address, pid)
        return True


def accepts(host: str, port: int, timeout: float = 0.2) -> bool:
    """True if something accepts a TCP connection on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
