"""The whole validated configuration: one frozen dataclass of the sections."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, overload

from ..errors import ConfigError
from .client import ClientConfig
from .defaults import DEFAULT_SERVERS
from .security import SecurityConfig
from .services import LoggingConfig, SchedulerConfig, ServerConfig, WebConfig
from .store import StoreConfig
from .tracing import TracingConfig
from .worker import WorkerConfig

if TYPE_CHECKING:
    from ..signing import Keyring


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    path: str | None = None
    servers: tuple = DEFAULT_SERVERS
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    client: ClientConfig = field(default_factory=ClientConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    web: WebConfig = field(default_factory=WebConfig)
    plugins: tuple = ()
    functions: dict = field(default_factory=dict)
    #: ``schedules:`` (gearman_frame.sending.schedules.Schedule each) and how they are run.
    schedules: tuple = ()
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    #: ``store:``: the job ledger.
    store: StoreConfig = field(default_factory=StoreConfig)
    #: ``tracing:``: OpenTelemetry traces (off unless configured).
    tracing: TracingConfig = field(default_factory=TracingConfig)

    def replace(self, **changes: Any) -> Config:
        """Return a copy with top-level fields replaced (CLI overrides)."""
        return dataclasses.replace(self, **changes)

    @overload
    def resolve(self, relative: str) -> str: ...

    @overload
    def resolve(self, relative: None) -> None: ...

    def resolve(self, relative: str | None) -> str | None:
        """Resolve a path from the config relative to the config file's folder."""
        if relative is None:
            return None
        base = os.path.dirname(os.path.abspath(self.path)) if self.path else os.getcwd()
        return os.path.realpath(os.path.join(base, relative))

    @property
    def keyring(self) -> Keyring | None:
        """The fleet's Keyring, or None when no key is configured (signing off)."""
        return self.security.keyring

    def warnings(self) -> list[str]:
        """Settings that are valid but risky, one line each (logged at worker start)."""
        found = []
        if self.keyring is not None:
            found += [f"{self.path}: functions.{name}: raw_shell with allow_unsigned runs "
                      "any shell line anyone who reaches gearmand sends"
                      for name, fn in self.functions.items()
                      if fn.raw_shell and fn.allow_unsigned]
        return found

    def check_pools(self, served: Iterable[str]) -> None:
        """Raise ConfigError unless the pools (if any) serve exactly the functions
        ``served`` (configured and @tasks): each in some pool, no pool naming another."""
        pools = self.worker.pools
        if not pools:
            return
        pooled = {f for pool in pools for f in pool.functions}
        for pool in pools:
            for function in pool.functions:
                if function not in served:
                    raise ConfigError(self.path, f"worker.pools.{pool.name}.functions",
                                      f"functions this worker serves ({', '.join(sorted(served))})",
                                      got=f"unknown function {function!r}")
        missing = sorted(set(served) - pooled)
        if missing:
            raise ConfigError(self.path, "worker.pools",
                              "every function served by some pool",
                              got=f"{', '.join(missing)} in no pool")

    def check_tasks(self, task_names: Iterable[str]) -> None:
        """Raise ConfigError for a function with no command, no shell and no @task."""
        for name, fn in self.functions.items():
            if not fn.is_external and name not in task_names:
                raise ConfigError(
                    self.path, f"functions.{name}",
                    "'command', 'shell' or 'raw_shell', or a @task of that name in "
                    f"the plugins {list(self.plugins)}",
                    got="found none of them")
