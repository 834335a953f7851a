"""Logging: configured once by each CLI entry point, never at import.

Every record carries ``worker``, ``function`` and ``job_id`` from a context variable that
worker threads set around each job (:func:`job_context`), so lines from a busy
multi-threaded worker can be told apart. Library modules only call
``logging.getLogger(__name__)``.

A line is one line: control characters in the message and in every field are escaped
(a job's field name holding a newline cannot forge a second line) and a message is cut
at MAX_MESSAGE characters. Job values are logged only at DEBUG, cut with :func:`cut`.
A log file and its folder are owner-only.
"""
from __future__ import annotations

import contextvars
import json
import logging
import os
from logging.handlers import RotatingFileHandler
import sys
from typing import IO, TYPE_CHECKING, Any

from .files import private_folder

if TYPE_CHECKING:
    from .config import LoggingConfig

logging.getLogger("gearman_frame").addHandler(logging.NullHandler())

#: Bytes a log file reaches before it is rotated.
LOG_FILE_MAX_BYTES = 10 * 1024 * 1024
#: Rotated log files kept beside the current one.
LOG_FILE_BACKUPS = 5

#: Characters of one log message kept; the rest is replaced by a count.
MAX_MESSAGE = 2000
#: Characters of a job value (a command line, an error text) shown at DEBUG.
VALUE_PREFIX = 200

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(worker)s %(function)s %(job_id)s %(name)s: %(message)s"
_CONTEXT_FIELDS = ("worker", "function", "job_id")
_context: contextvars.ContextVar[dict] = contextvars.ContextVar("gearman_frame_log_context",
                                                               default={})
_HANDLER_MARK = "_gearman_frame_handler"


class job_context:  # noqa: N801 - used like a function: ``with job_context(...):``
    """Add ``worker``, ``function`` and/or ``job_id`` to every record logged inside (a
    class rather than a generator: it is entered once per job)."""

    __slots__ = ("fields", "token")

    def __init__(self, **fields: str | None) -> None:
        self.fields = fields

    def __enter__(self) -> job_context:
        self.token = _context.set({**_context.get(), **self.fields})
        return self

    def __exit__(self, *exc: object) -> None:
        _context.reset(self.token)


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 256 else f"\\u{code:04x}" if code < 65536 \
        else f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with every character that is not printable escaped (``\\n``, ``\\x1b``,
    ``\\u2028``, a lone surrogate), for a log line or a table cell."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def cut(text: str, limit: int = VALUE_PREFIX) -> str:
    """The first ``limit`` characters of ``text``, saying how many more there were."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more)"


class ContextFilter(logging.Filter):
    """Copies the calling thread's job context onto each record ('-' where unknown) and
    makes the message and every field one bounded, printable line."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _context.get()
        for name in _CONTEXT_FIELDS:
            value = getattr(record, name, None)
            setattr(record, name, printable(ctx.get(name, "-") if value is None else value))
        message = record.getMessage()
        if len(message) > MAX_MESSAGE:
            message = cut(message, MAX_MESSAGE)
        record.msg, record.args = printable(message), None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the job context as fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "thread": record.threadName,
            "message": record.getMessage(),
        }
        for name in _CONTEXT_FIELDS:
            entry[name] = getattr(record, name, "-")
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _private_rotating_handler(path: str) -> RotatingFileHandler:
    """A rotating file handler whose files are created 0600 (they name jobs and, at
    DEBUG, hold their values)."""

    class PrivateRotatingFileHandler(RotatingFileHandler):
        def _open(self) -> Any:
            fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                         0o600)
            return open(fd, "a", encoding=self.encoding, errors=self.errors)

    return PrivateRotatingFileHandler(path, maxBytes=LOG_FILE_MAX_BYTES,
                                      backupCount=LOG_FILE_BACKUPS, encoding="utf-8")


def setup_logging(settings: LoggingConfig, level: str | None = None,
                  stream: IO[str] | None = None) -> logging.Handler:
    """Install gearman-frame's handler on the root logger (idempotent).

    ``settings`` is a :class:`~gearman_frame.config.LoggingConfig`; ``level`` (a CLI's
    ``--log-level``) overrides it. Logs go to ``settings.file`` (rotating) if set,
    otherwise to ``stream`` (stderr), keeping stdout free for ``--json`` output.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(handler)
        handler.close()
    if settings.file:
        private_folder(os.path.dirname(os.path.abspath(settings.file)))
        handler = _private_rotating_handler(settings.file)
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if settings.format == "json"
                         else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel((level or settings.level).upper())
    return handler
