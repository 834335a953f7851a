"""Plugins: modules that define what to send (the rules are in plugins/eg.py).

``sendjob plugin NAME ARGS...`` imports ``plugins.NAME`` (else the module NAME),
lets it parse ARGS (``add_arguments(parser)``), sends every Job its ``jobs(args, config)``
yields, hands each result to ``on_result(job, result)`` and reports the counts. A plugin
that raises stops sending; what it already sent is still collected and reported.
"""
from __future__ import annotations

import argparse
import importlib
import logging
from dataclasses import dataclass, field
from typing import NoReturn

from gearman_frame.errors import FrameError, UsageError

log = logging.getLogger(__name__)

PLUGIN_PACKAGE = "plugins"


class PluginError(FrameError):
    """Raised when a plugin's own code fails; ``report`` says what was already sent."""

    def __init__(self, name, error, report):
        self.plugin = name
        self.error = error
        self.report = report
        super().__init__(f"plugin {name} failed after sending {report.sent} job(s) "
                         f"({report.ok} ok, {report.failed} failed): "
                         f"{type(error).__name__}: {error}")


@dataclass
class PluginReport:
    """Counts of one plugin run."""

    name: str
    sent: int = 0
    ok: int = 0
    failed: int = 0
    outbox: int = 0
    #: Background jobs whose result did not arrive within the wait.
    unfinished: int = 0
    failures: list = field(default_factory=list)
    error: BaseException | None = None


def load_plugin(name):
    """Import ``plugins.NAME``, else the module NAME; UsageError if there is neither."""
    if not name or not all(part.isidentifier() for part in name.split(".")):
        raise UsageError(f"plugin {name!r}: expected a module name (letters, digits, _ and "
                         "dots), like 'eg' or 'mypackage.batch'")
    candidates = [name] if "." in name else [f"{PLUGIN_PACKAGE}.{name}", name]
    for module_name in candidates:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name and module_name.startswith(err.name):
                continue
            raise
        if not callable(getattr(module, "jobs", None)):
            raise UsageError(f"plugin {name}: {module_name} defines no jobs(args, config)")
        return module
    raise UsageError(f"unknown plugin '{name}': expected a module plugins/{name}.py "
                     "or an importable module of that name")


def parse_plugin_args(module, name, argv):
    """Parse ``argv`` with the plugin's ``add_arguments(parser)`` (plain list if none)."""
    if not hasattr(module, "add_arguments"):
        return list(argv)
    parser = _PluginParser(prog=f"sendjob plugin {name}",
                           description=(module.__doc__ or "").strip().splitlines()[0]
                           if module.__doc__ else None)
    module.add_arguments(parser)
    return parser.parse_args(argv)


class _PluginParser(argparse.ArgumentParser):
    """A plugin's argument parser: a bad argument is a UsageError (exit 2, one line)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"plugin {self.prog.rsplit(' ', 1)[-1]}: {message}")


def run_plugin(module, name, args, config, client, progress=None, wait=None):
    """Send the plugin's jobs through ``client``; return a PluginReport (or raise
    PluginError once the jobs already sent have finished). With ``wait`` (seconds), a
    background plugin's ``on_result`` and counts get each job's Result, collected from
    the result channel, instead of its delivery."""
    report = PluginReport(name)
    background = bool(getattr(module, "background", False))
    on_result = getattr(module, "on_result", None)
    waiting: dict | None = {} if background and wait is not None else None

    def jobs():
        try:
            for job in module.jobs(args, config):
                report.sent += 1
                yield job
        except Exception as err:  # the plugin's own bug: stop sending, keep what was sent
            report.error = err
            log.error("plugin %s raised %s: %s", name, type(err).__name__, err)

    def delivered(job, delivery):
        if delivery.ok and not delivery.outbox and waiting is not None:
            waiting[delivery.id] = job  # its result comes later, from the channel
        else:
            finished(job, delivery)

    def finished(job, outcome):
        if getattr(outcome, "outbox", False):
            report.outbox += 1
        elif outcome.ok:
            report.ok += 1
        else:
            report.failed += 1
            report.failures.append((job, outcome))
        if progress:
            progress(report)
        if on_result:
            try:
                on_result(job, outcome)
            except Exception as err:  # a broken callback must not stop the other jobs
                report.error = report.error or err
                log.error("plugin %s: on_result raised %s: %s", name, type(err).__name__, err)

    client.submit_many(jobs(), background=background, collect=False,
                       on_result=finished if waiting is None else delivered)
    if waiting:
        for result in client.results(follow=True, wait=wait):
            job = waiting.pop(result.id, None)
            if job is not None:
                finished(job, result)
            if not waiting:
                break
        report.unfinished = len(waiting)
    if report.error is not None:
        raise PluginError(name, report.error, report)
    return report
