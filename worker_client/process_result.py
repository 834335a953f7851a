"""How a command ended: its exit code or signal, timeout, output and what was killed."""
from __future__ import annotations

import signal
from dataclasses import dataclass


@dataclass
class ProcessResult:
    """How a command ended. ``exit_code`` is None when a signal ended it."""

    argv: object
    exit_code: int | None
    signal: int | None
    timed_out: bool
    duration_s: float
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_size: int = 0
    stderr_size: int = 0
    stdout_path: str | None = None
    stderr_path: str | None = None
    killed_leftovers: int = 0
    escaped: tuple = ()
    cancelled: bool = False
    #: killed on request (`runadmin cancel`), not because the worker stops
    user_cancelled: bool = False
    pid: int | None = None
    #: Why the command could not be started (``E2BIG: Argument list too long``), or None.
    start_error: str | None = None

    @property
    def ok(self):
        return self.exit_code == 0 and not self.timed_out

    def describe(self):
        """One line saying how the command ended."""
        if self.timed_out:
            return f"timed out after {self.duration_s:.2f}s (process group killed)"
        if self.user_cancelled:
            return "cancelled (runadmin cancel): process group killed"
        if self.cancelled:
            return "killed: the worker is stopping"
        if self.start_error:
            return f"could not start the command: {self.start_error} (exit code 127)"
        if self.signal is not None:
            text = f"killed by signal {self.signal} ({_signal_name(self.signal)})"
        else:
            text = f"exit code {self.exit_code}"
        if self.escaped:
            text += f"; killed {len(self.escaped)} process(es) that escaped its group"
        return text


def _signal_name(number):
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown"
