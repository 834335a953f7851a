"""Python tasks: ``@task("name")`` registers a function that workers serve by that name.

The registry lives in the shared core because both roles need it: workers import the
plugin modules to serve their tasks; senders import the same modules to send them.
``f.put(**kw)`` and ``f.submit(**kw)`` need a job client, which the sender package
provides through :func:`set_client_factory` (the core never imports a role package).
"""
import importlib
import logging

from .errors import ConfigError, UsageError

log = logging.getLogger(__name__)

_registry = {}
_client_factory = None


class Task:
    """A registered Python task: call it locally, or send it with put()/submit()."""

    def __init__(self, name, func):
        self.name = name
        self.func = func
        self.__doc__ = func.__doc__
        self.__name__ = getattr(func, "__name__", name)

    def __call__(self, *args, **kwargs):
        return self.func(*args, **kwargs)

    def _client(self):
        if _client_factory is None:
            raise UsageError(f"task {self.name}: import send_job_client to send tasks")
        return _client_factory()

    def put(self, *args, priority="normal", **kwargs):
        """Send in the background; return the job handle (or 'outbox')."""
        return self._client().submit_background(self.name, *args, priority=priority, **kwargs)

    def submit(self, *args, priority="normal", timeout=None, **kwargs):
        """Send in the foreground; return the Result."""
        return self._client().submit(self.name, *args, priority=priority, timeout=timeout,
                                     **kwargs)

    def __repr__(self):
        return f"<Task {self.name}>"


def task(name=None):
    """Decorator registering a Python function as the Gearman function ``name``."""
    def register(func):
        task_name = name or func.__name__
        if task_name in _registry and _registry[task_name].func is not func:
            log.warning("task %s registered again by %s", task_name, func)
        _registry[task_name] = Task(task_name, func)
        return _registry[task_name]
    if callable(name):  # used as @task without arguments
        func, name = name, None
        return register(func)
    return register


def registered():
    """{name: Task} of every task registered so far."""
    return dict(_registry)


def set_client_factory(factory):
    """Called by the sender package: ``factory()`` returns a JobClient for put/submit."""
    global _client_factory
    _client_factory = factory


def import_plugins(modules, config_path=None):
    """Import the plugin modules named in config; a failure is a ConfigError naming it."""
    for index, module in enumerate(modules):
        try:
            importlib.import_module(module)
        except Exception as err:
            raise ConfigError(config_path, f"plugins[{index}]", "an importable module",
                              got=f"{module}: {type(err).__name__}: {err}") from err
    return registered()
