"""The one error tree of gearman-frame.

Every error a user can meet derives from :class:`FrameError`, carries its data as
attributes, and knows the exit code the command-line contract gives it, so each CLI maps
any of them to one line and one code without a traceback.
"""

from __future__ import annotations

import reprlib
from typing import Iterable

#: Exit codes of the command-line contract (docs/commands.md).
EXIT_OK = 0
EXIT_FAILED = 1  # the job or operation failed (non-zero exit, timeout, ERR reply)
EXIT_USAGE = 2  # bad usage or bad config
EXIT_UNREACHABLE = 3  # no job server reachable


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlevel = 2
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = 4
#: Characters of a value shown in an error.
SHOWN_VALUE = 120


def short_repr(value: object) -> str:
    """A repr of at most SHOWN_VALUE characters, whatever ``value`` is (a YAML alias
    bomb's nested lists have a repr of billions of characters)."""
    text = _REPR.repr(value)
    return text if len(text) <= SHOWN_VALUE else text[:SHOWN_VALUE] + "..."


class FrameError(Exception):
    """Raised for any failure gearman-frame reports to a user."""

    exit_code = EXIT_FAILED


class ConfigError(FrameError):
    """Raised when a config file (or a CLI/env override of it) is not what is expected.

    ``str(err)`` is one line: ``FILE: KEY.PATH: expected …, got …``.
    """

    exit_code = EXIT_USAGE

    def __init__(self, path: object, key: str | None, expected: str, value: object = None, *,
                 got: str | None = None) -> None:
        self.path = str(path) if path is not None else "<config>"
        self.key = key
        self.expected = expected
        self.value = value
        where = f"{self.path}: {key}: " if key else f"{self.path}: "
        shown = got if got is not None else f"got {short_repr(value)}"
        super().__init__(f"{where}expected {expected}, {shown}")


class UsageError(FrameError):
    """Raised when a command line or an API call is malformed."""

    exit_code = EXIT_USAGE


class OutboxError(FrameError):
    """Raised when the outbox file cannot be used (corrupt, locked, read-only, disk full);
    the message names the file and what to do."""

    exit_code = EXIT_USAGE

    def __init__(self, path: object, problem: str, advice: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"outbox {path}: {problem}; {advice}")


class ResultStoreError(OutboxError):
    """Raised when the result store cannot be used; names the file and what to do."""

    def __init__(self, path: object, problem: str, advice: str) -> None:
        self.path = str(path)
        self.problem = problem
        FrameError.__init__(self, f"result store {path}: {problem}; {advice}")


class EnvelopeError(FrameError):
    """Raised when job data claims to be an envelope but is not a valid one."""


class WireError(FrameError):
    """Raised for any failure talking to gearmand."""


class ServerUnavailable(WireError):
    """Raised when no configured job server can be reached."""

    exit_code = EXIT_UNREACHABLE

    def __init__(self, message: str, servers: Iterable[object] = ()) -> None:
        self.servers = tuple(servers)
        super().__init__(message)


class ConnectionLost(WireError):
    """Raised when a connection to gearmand breaks (instead of the library's SystemExit)."""


class BadRequest(WireError):
    """Raised before sending a request gearmand would mishandle (a too-long unique, a
    function name it would drop the connection for)."""

    exit_code = EXIT_USAGE


class ServerRefused(WireError):
    """Raised when gearmand answers a request with an ERROR packet (e.g. QUEUE_FULL)."""

    def __init__(self, code: str, text: str, server: object = None) -> None:
        self.code = code
        self.text = text
        self.server = server
        where = f" ({server})" if server else ""
        super().__init__(f"job server refused the request{where}: {code}: {text}")


class SubmitTimeout(WireError):
    """Raised when a submit ran out of time; ``handle`` says whether gearmand queued it."""

    def __init__(self, message: str, handle: str | None = None,
                 attempts: Iterable[tuple[str, str]] = ()) -> None:
        self.handle = handle
        self.attempts = tuple(attempts)
        super().__init__(message)


class WorkflowTimeout(FrameError):
    """Raised when a workflow is still running when its sender stops waiting (it goes
    on: ``sendjob status ID`` follows it)."""

    def __init__(self, workflow: str, timeout: float) -> None:
        self.workflow = workflow
        super().__init__(f"workflow {workflow} still running after {timeout:g}s (it goes "
                         f"on: sendjob status {workflow})")


class JobTimeout(WireError):
    """Raised when a foreground job got no result after every resend; ``attempts`` lists
    ``(server, what happened)`` for each try."""

    def __init__(self, function: str, job_id: str, attempts: Iterable[tuple[str, str]]) -> None:
        self.function = function
        self.job_id = job_id
        self.attempts = tuple(attempts)
        tried = "; ".join(f"{server}: {what}" for server, what in self.attempts)
        super().__init__(f"job {job_id} on '{function}' got no result after "
                         f"{len(self.attempts)} attempt(s): {tried}")


class ProtocolError(WireError):
    """Raised when gearmand's reply is not in the format its protocol documents."""


class AdminError(FrameError):
    """Raised when gearmand answers an admin command with ``ERR CODE message``."""

    def __init__(self, code: str, message: str, server: object = None) -> None:
        self.code = code
        self.message = message
        self.server = server
        where = f"{server}: " if server else ""
        super().__init__(f"{where}{code} {message}".strip())


class AdminUnsupported(AdminError):
    """Raised when no server that answered has an admin command (the Perl job server has
    only status, workers, jobs, clients, maxqueue, shutdown and version)."""

    def __init__(self, command: str, servers: Iterable[object]) -> None:
        self.command = command
        self.servers = list(servers)
        FrameError.__init__(self, f"{', '.join(map(str, self.servers))}: '{command}' is not supported "
                                  "by this job server")
        self.code, self.message, self.server = "unknown_command", "", self.servers[0]


class ServerControlError(FrameError):
    """Raised when the local gearmand cannot be started, stopped or inspected."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        self.exit_code = exit_code
        super().__init__(message)


class LedgerUnavailable(FrameError):
    """Raised when the job ledger (``store.url``) cannot be reached or used; names the
    store (its URL without a password) and what went wrong."""

    exit_code = EXIT_UNREACHABLE

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"store.url {where}: {problem}")
