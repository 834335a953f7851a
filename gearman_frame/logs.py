"""Logging: configured once by each CLI entry point, never at import.

Every record carries ``worker``, ``function`` and ``job_id`` from a context variable that
worker threads set around each job (:func:`job_context`), so lines from a busy
multi-threaded worker can be told apart. Library modules only call
``logging.getLogger(__name__)``.
"""
import contextvars
import json
import logging
import os
import sys

#: Bytes a log file reaches before it is rotated.
LOG_FILE_MAX_BYTES = 10 * 1024 * 1024
#: Rotated log files kept beside the current one.
LOG_FILE_BACKUPS = 5

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(worker)s %(function)s %(job_id)s %(name)s: %(message)s"
_CONTEXT_FIELDS = ("worker", "function", "job_id")
_context = contextvars.ContextVar("gearman_frame_log_context", default={})
_HANDLER_MARK = "_gearman_frame_handler"


class job_context:  # noqa: N801 - used like a function: ``with job_context(...):``
    """Add ``worker``, ``function`` and/or ``job_id`` to every record logged inside (a
    class rather than a generator: it is entered once per job)."""

    __slots__ = ("fields", "token")

    def __init__(self, **fields):
        self.fields = fields

    def __enter__(self):
        self.token = _context.set({**_context.get(), **self.fields})
        return self

    def __exit__(self, *exc):
        _context.reset(self.token)


class ContextFilter(logging.Filter):
    """Copies the calling thread's job context onto each record ('-' where unknown)."""

    def filter(self, record):
        ctx = _context.get()
        for name in _CONTEXT_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, ctx.get(name, "-"))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the job context as fields."""

    def format(self, record):
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


def setup_logging(settings, level=None, stream=None):
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
        from logging.handlers import RotatingFileHandler  # only when logging to a file
        os.makedirs(os.path.dirname(os.path.abspath(settings.file)), exist_ok=True)
        handler = RotatingFileHandler(
            settings.file, maxBytes=LOG_FILE_MAX_BYTES, backupCount=LOG_FILE_BACKUPS,
            encoding="utf-8")
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if settings.format == "json"
                         else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel((level or settings.level).upper())
    return handler
