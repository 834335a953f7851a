"""Python tasks: ``@task("name")`` registers a function that workers serve by that name.

The registry lives in the shared core because both roles need it: workers import the
plugin modules to serve their tasks; senders import the same modules to send them.
``f.put(**kw)`` and ``f.submit(**kw)`` send through the job client that is open in the
calling context (``with JobClient(config) as client:`` opens one; ``sendjob plugin`` runs
a plugin inside its own), so every call reuses one client and its connections, and its
owner closes it; the core never imports a role package and keeps no client of its own.
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib
import sys
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .errors import ConfigError, UsageError

log = logging.getLogger(__name__)

_registry: dict[str, "Task"] = {}
#: The job client open in this context (see :func:`using`), or None.
_current_client: contextvars.ContextVar = contextvars.ContextVar("gearman_frame_client",
                                                                 default=None)


@contextlib.contextmanager
def using(client: Any) -> Iterator[Any]:
    """Make ``client`` the one ``put``/``submit`` use inside the ``with`` block."""
    token = _current_client.set(client)
    try:
        yield client
    finally:
        _current_client.reset(token)


class Task:
    """A registered Python task: call it locally, or send it with put()/submit()."""

    def __init__(self, name: str, func: Callable[..., Any],
                 on_success: Callable[[Any, Any], Any] | None = None,
                 on_failure: Callable[[Any, Any], Any] | None = None,
                 on_retry: Callable[[Any, Any], Any] | None = None,
                 batch: dict | None = None) -> None:
        self.name = name
        self.func = func
        #: A batch task (``batch={"max": N, "wait": SECONDS}``) is called with a list of
        #: up to N queued jobs (each with .id, .args, .kwargs) and returns one result per
        #: job, in order; an Exception in the list fails that job alone.
        self.batch = _batch_policy(name, batch)
        #: Hooks a worker calls with (job, result): the job is its Request (id, args,
        #: kwargs); on_retry after each failed attempt that will be retried, then
        #: on_success or on_failure once the job ends (a raising hook changes nothing).
        self.on_success, self.on_failure, self.on_retry = on_success, on_failure, on_retry
        self.__doc__ = func.__doc__
        self.__name__ = getattr(func, "__name__", name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def _client(self) -> Any:
        client = _current_client.get()
        if client is None:
            raise UsageError(f"task {self.name}: put() and submit() send through an open job "
                             "client: call them inside 'with JobClient(config):' (sendjob "
                             "plugin opens one for its plugin)")
        return client

    def put(self, *args: Any, priority: str = "normal", idempotency_key: str | None = None,
            **kwargs: Any) -> Any:
        """Send in the background; return the Delivery (handle, or kept in the outbox).
        Every job put with one ``idempotency_key`` gets the outcome of one run."""
        return self._client().submit_background(self.name, *args, priority=priority,
                                                idempotency_key=idempotency_key, **kwargs)

    def submit(self, *args: Any, priority: str = "normal", timeout: float | None = None,
               idempotency_key: str | None = None, **kwargs: Any) -> Any:
        """Send in the foreground; return the Result (with ``idempotency_key``: the one
        run's, whoever sent it)."""
        return self._client().submit(self.name, *args, priority=priority, timeout=timeout,
                                     idempotency_key=idempotency_key, **kwargs)

    def s(self, *args: Any, **kwargs: Any) -> Any:
        """A signature of this task: a workflow's step (``chain(a.s(1), b.s())``)."""
        from .workflows.canvas import Signature
        return Signature(self.name, args, kwargs)

    def __repr__(self) -> str:
        return f"<Task {self.name}>"


class BatchPolicy:
    """How a batch task gathers jobs: at most ``max`` a call, for at most ``wait``
    seconds after the first one arrives."""

    __slots__ = ("max", "wait")

    def __init__(self, max: int, wait: float) -> None:
        self.max, self.wait = max, wait

    def __repr__(self) -> str:
        return f"BatchPolicy(max={self.max}, wait={self.wait})"


def _batch_policy(name: str, batch: dict | None) -> BatchPolicy | None:
    if batch is None:
        return None
    size, wait = (batch.get("max"), batch.get("wait", 1.0)) if isinstance(batch, dict) \
        else (None, None)
    if (not isinstance(batch, dict) or set(batch) - {"max", "wait"}
            or isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 10_000
            or isinstance(wait, bool) or not isinstance(wait, (int, float))
            or not 0 <= wait <= 3600):
        raise ValueError(f"task {name}: batch must be {{'max': 1..10000, 'wait': seconds "
                         f"0..3600}}, got {batch!r}")
    return BatchPolicy(size, float(wait))


def task(name: str | Callable[..., Any] | None = None,
         on_success: Callable[[Any, Any], Any] | None = None,
         on_failure: Callable[[Any, Any], Any] | None = None,
         on_retry: Callable[[Any, Any], Any] | None = None,
         batch: dict | None = None) -> Any:
    """Decorator registering a Python function as the Gearman function ``name``, with
    optional hooks ``on_success``/``on_failure``/``on_retry(job, result)`` (see Task) and,
    for a batch task, ``batch={"max": N, "wait": SECONDS}``."""
    def register(func: Callable[..., Any]) -> Task:
        task_name = name if isinstance(name, str) and name else func.__name__
        if task_name in _registry and _registry[task_name].func is not func:
            log.warning("task %s registered again by %s", task_name, func)
        _registry[task_name] = Task(task_name, func, on_success, on_failure, on_retry,
                                    batch)
        return _registry[task_name]
    if callable(name):  # used as @task without arguments
        func, name = name, None
        return register(func)
    return register


#: How a running @task reports progress (set by the worker around each call).
_reporter: contextvars.ContextVar = contextvars.ContextVar("gearman_frame_progress",
                                                           default=None)


def progress(done: int, total: int) -> None:
    """From inside a @task: say how far it is (sent to gearmand as WORK_STATUS, so
    `sendjob status ID` shows ``done/total``). Paced by the worker; outside a worker it
    does nothing."""
    report = _reporter.get()
    if report is not None:
        report(int(done), int(total))


@contextlib.contextmanager
def reporting(report: Callable[[int, int], object]) -> Iterator[None]:
    """Run a task with ``report(done, total)`` behind :func:`progress` (the worker's)."""
    token = _reporter.set(report)
    try:
        yield
    finally:
        _reporter.reset(token)


def registered() -> dict[str, Task]:
    """{name: Task} of every task registered so far."""
    return dict(_registry)


def import_plugins(modules: Iterable[str], config_path: str | None = None,
                   fresh: bool = False) -> dict[str, Task]:
    """Import the plugin modules named in config; a failure is a ConfigError naming it.
    ``fresh`` (a worker's reload): forget every task, then import each plugin anew, so
    what its code registers now is what is served."""
    previous = dict(_registry)
    if fresh:
        _registry.clear()
    for index, module in enumerate(modules):
        try:
            loaded = sys.modules.get(module) if fresh else None
            if loaded is not None:
                importlib.reload(loaded)
            else:
                importlib.import_module(module)
        except Exception as err:
            if fresh:  # a reload that fails changes nothing
                _registry.clear()
                _registry.update(previous)
            raise ConfigError(config_path, f"plugins[{index}]", "an importable module",
                              got=f"{module}: {type(err).__name__}: {err}") from err
    return registered()
