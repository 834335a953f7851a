"""gearmand's admin text protocol (1.1.20): framing and typed parsing of replies (the
admin's, and a sender's look at who serves a function: ``served``).

Pure functions and a buffer, no sockets, so every reply format can be tested split at
every byte. Multi-line replies end with a line ``.``; single-line ones are ``OK ...`` or
``ERR CODE message`` (with ``+`` for spaces), ended by LF or CRLF.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, List

from ..errors import AdminError, ProtocolError

MULTI_LINE = ("status", "prioritystatus", "workers", "show jobs", "show unique jobs")


@dataclass(frozen=True)
class FunctionStatus:
    """One row of ``status``; gearmand's TOTAL counts running jobs, so queued = total - running."""

    server: str
    function: str
    queued: int
    running: int
    workers: int


@dataclass(frozen=True)
class PriorityStatus:
    """One row of ``prioritystatus``: queued jobs by priority (running ones not counted)."""

    server: str
    function: str
    high: int
    normal: int
    low: int
    workers: int


@dataclass(frozen=True)
class WorkerConnection:
    """One row of ``workers``: every connection, '-' meaning it set no client id."""

    server: str
    fd: int
    ip: str
    client_id: str
    functions: List[str] = field(default_factory=list)


@dataclass(frozen=True)
class QueuedJob:
    """One row of ``show jobs``."""

    server: str
    handle: str
    retries: int
    ignore_job: int
    job_queued: int


class ReplyBuffer:
    """Collects bytes as they arrive; hands out complete lines and blocks."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def take_line(self) -> str | None:
        """The next complete line (without LF/CRLF) or None."""
        end = self._buf.find(b"\n")
        if end < 0:
            return None
        line = bytes(self._buf[:end]).rstrip(b"\r")
        del self._buf[:end + 1]
        return line.decode("utf-8", "replace")

    def take_block(self) -> list[str] | None:
        """The lines of a complete ``.``-ended reply (or a lone ERR line), else None."""
        if self._buf.startswith(b"ERR "):
            line = self.take_line()
            return None if line is None else [line]
        if self._buf.startswith(b".\n") or self._buf.startswith(b".\r\n"):
            self.take_line()
            return []
        end = self._buf.find(b"\n.\n")
        if end < 0:
            return None
        body = bytes(self._buf[:end]).decode("utf-8", "replace")
        del self._buf[:end + 3]
        return [line.rstrip("\r") for line in body.split("\n")]


def check_error(line: str, server: object = None) -> None:
    """Raise AdminError for an ``ERR`` line."""
    if line.startswith("ERR"):
        parts = line.split(" ", 2)
        code = parts[1] if len(parts) > 1 else "ERR"
        message = parts[2].replace("+", " ") if len(parts) > 2 else ""
        raise AdminError(code, message, server)


def parse_ok(line: str, server: object = None) -> str:
    """``OK [value]`` → value ('' if none); ERR raises AdminError; else ProtocolError."""
    check_error(line, server)
    if line == "OK" or line.startswith("OK "):
        return line[3:]
    raise ProtocolError(f"{server}: expected 'OK ...' or 'ERR ...', got {line!r}")


def parse_version(line: str, server: object = None) -> str:
    """``OK 1.1.20`` from gearmand; the Perl job server answers ``v1.130.1`` alone."""
    check_error(line, server)
    return line[3:] if line.startswith("OK ") else line


def unsupported(err: AdminError) -> bool:
    """True if an AdminError says the server does not know the command."""
    return err.code.lower() == "unknown_command"


def _ints(fields: list[str], line: str, server: object) -> list[int]:
    try:
        return [int(f) for f in fields]
    except ValueError as err:
        raise ProtocolError(f"{server}: expected numbers in {line!r}") from err


def _split(line: str, count: int, server: object, command: str) -> list[str]:
    fields = line.split("\t")
    if len(fields) != count:
        raise ProtocolError(f"{server}: '{command}' line has {len(fields)} fields, "
                            f"expected {count}: {line!r}")
    return fields


def _block(lines: list[str], server: object) -> list[str]:
    if lines and lines[0].startswith("ERR"):
        check_error(lines[0], server)
    return lines


def _records(lines: list[str], server: str, command: str, count: int,
             record: Callable[..., Any], skipped: list | None = None) -> list:
    """Lines of ``count`` fields, a name then numbers, as ``record(server, name, *ints)``.

    A malformed line raises ProtocolError, or, given a ``skipped`` list, is appended to it
    as ``(server, line)`` and left out (a function named with a TAB or LF by any
    connection must not blind the admin to every other row)."""
    rows = []
    for line in _block(lines, server):
        try:
            name, *numbers = _split(line, count, server, command)
            rows.append(record(server, name, *_ints(numbers, line, server)))
        except ProtocolError:
            if skipped is None:
                raise
            skipped.append((server, line))
    return rows


def _function_status(server: str, function: str, total: int, running: int,
                     workers: int) -> FunctionStatus:
    return FunctionStatus(server, function, max(0, total - running), running, workers)


def parse_status(lines: list[str], server: str,
                 skipped: list | None = None) -> list[FunctionStatus]:
    return _records(lines, server, "status", 4, _function_status, skipped)


def parse_prioritystatus(lines: list[str], server: str,
                         skipped: list | None = None) -> list[PriorityStatus]:
    return _records(lines, server, "prioritystatus", 5, PriorityStatus, skipped)


def parse_workers(lines: list[str], server: str,
                  skipped: list | None = None) -> list[WorkerConnection]:
    """``FD IP CLIENT_ID : F1 F2``; the client id may hold spaces (any connection sets
    its own), so it is everything between the IP and the first `` :``."""
    rows = []
    for line in _block(lines, server):
        fd, _, rest = line.partition(" ")
        ip, _, rest = rest.partition(" ")
        client_id, sep, tail = rest.partition(" :")
        if not sep or not fd.isdigit() or not ip or not client_id:
            if skipped is None:
                raise ProtocolError(f"{server}: malformed 'workers' line: {line!r}")
            skipped.append((server, line))
            continue
        rows.append(WorkerConnection(server, int(fd), ip, client_id, tail.split()))
    return rows


def parse_jobs(lines: list[str], server: str,
               skipped: list | None = None) -> list[QueuedJob]:
    return _records(lines, server, "show jobs", 4, QueuedJob, skipped)


def parse_uniques(lines: list[str], server: str) -> list[str]:
    return list(_block(lines, server))


#: A worker process's label: ``p2``, or ``POOL-p2`` in a worker.pools pool.
_PROCESS_LABEL = re.compile(r"(?:[A-Za-z0-9_]+-)?p[0-9]+")


def worker_name_of(client_id: str) -> str | None:
    """The worker name of a thread's client id (``web1.3``, ``web1.ctl``, and a process's
    ``web1.p2.3``, ``web1.p2.ctl`` → ``web1``); None for '-' (a connection that set no
    id)."""
    if client_id in ("-", ""):
        return None
    process = process_of(client_id)
    if process is None:
        return client_id
    name, _, label = process.rpartition(".")
    return name if name and _PROCESS_LABEL.fullmatch(label) else process


def process_of(client_id: str) -> str | None:
    """The process part of a thread's client id (``web1.p2.3`` → ``web1.p2``, ``web1.3``
    → ``web1``, a batch task's ``web1.p2.batch-FUNCTION`` → ``web1.p2``), or None if it
    is not shaped like one."""
    process, batch, _function = client_id.partition(".batch-")
    if batch and process:
        return process
    process, _, index = client_id.rpartition(".")
    return process if process and (index.isdigit() or index == "ctl") else None
