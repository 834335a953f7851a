"""``worker:``: name, threads, processes and pools, recycling, patience of ``runworkers``."""
from __future__ import annotations

from dataclasses import dataclass

from ..templates import TemplateError, fields_of
from .defaults import (DEFAULT_DEAD_SERVER_AFTER, DEFAULT_GRACE, DEFAULT_MAX_KWARGS,
                       DEFAULT_MAX_PAYLOAD, DEFAULT_PROGRESS_INTERVAL, DEFAULT_STARTUP_TIMEOUT,
                       DEFAULT_THREADS, DEFAULT_WORKER_NAME, MAX_PROCESSES, MAX_THREADS,
                       POOL_NAME)
from .rules import Rules

@dataclass(frozen=True)
class WorkerConfig:
    """``worker:`` — name, thread count and stop/start patience of ``runworkers``."""

    name: str = DEFAULT_WORKER_NAME
    threads: int = DEFAULT_THREADS
    grace: float = DEFAULT_GRACE
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT
    progress_interval: float = DEFAULT_PROGRESS_INTERVAL
    max_payload: int = DEFAULT_MAX_PAYLOAD
    max_kwargs: int = DEFAULT_MAX_KWARGS
    #: Worker processes under one supervisor (``runworkers --processes``).
    processes: int = 1
    #: Recycling: a process past one of these (0: no limit) stops taking jobs, finishes
    #: its own and is replaced: jobs taken, seconds alive, MiB of RSS.
    max_jobs: int = 0
    max_lifetime: float = 0.0
    max_memory: float = 0.0
    #: Per-function pools (empty: every process serves every function).
    pools: tuple = ()
    #: ``HOST:PORT`` where the supervisor serves Prometheus metrics (None: off).
    metrics: str | None = None
    #: Seconds after which a server that stopped answering (a vanished host or link) is
    #: given up: the connection is dropped and made again, and a command whose job came
    #: through it is killed (gearmand hands the job to another worker).
    dead_server_after: float = DEFAULT_DEAD_SERVER_AFTER


@dataclass(frozen=True)
class PoolConfig:
    """One entry of ``worker.pools``: processes of their own for some functions, so slow
    functions cannot starve fast ones (GearmanManager's dedicated workers)."""

    name: str
    functions: tuple
    processes: int = 1
    threads: int = DEFAULT_THREADS


class WorkerRules(Rules):
    def worker(self, raw: object) -> WorkerConfig:
        raw = self.mapping(raw, "worker", ("name", "threads", "grace", "startup_timeout",
                                           "progress_interval", "max_payload", "max_kwargs",
                                           "processes", "max_jobs", "max_lifetime",
                                           "max_memory", "pools", "metrics",
                                           "dead_server_after"))
        name = self.string(raw.get("name", DEFAULT_WORKER_NAME), "worker.name")
        try:
            unknown = fields_of([name]) - {"hostname", "pid"}
        except TemplateError as err:
            raise self.error("worker.name", str(err), name) from err
        if unknown:
            raise self.error("worker.name", "only the fields {hostname} and {pid}", name)
        return WorkerConfig(
            name=name,
            threads=self.integer(raw.get("threads", DEFAULT_THREADS), "worker.threads", 1,
                                 MAX_THREADS),
            grace=self.number(raw.get("grace", DEFAULT_GRACE), "worker.grace"),
            startup_timeout=self.number(raw.get("startup_timeout", DEFAULT_STARTUP_TIMEOUT),
                                        "worker.startup_timeout"),
            progress_interval=self.number(raw.get("progress_interval",
                                                  DEFAULT_PROGRESS_INTERVAL),
                                          "worker.progress_interval", 0.01),
            max_payload=self.size(raw.get("max_payload", DEFAULT_MAX_PAYLOAD),
                                  "worker.max_payload"),
            max_kwargs=self.integer(raw.get("max_kwargs", DEFAULT_MAX_KWARGS),
                                    "worker.max_kwargs", 1),
            processes=self.integer(raw.get("processes", 1), "worker.processes", 1,
                                   MAX_PROCESSES),
            max_jobs=self.integer(raw.get("max_jobs", 0), "worker.max_jobs", 0),
            max_lifetime=self.number(raw.get("max_lifetime", 0), "worker.max_lifetime"),
            max_memory=self.number(raw.get("max_memory", 0), "worker.max_memory"),
            pools=self.pools(raw.get("pools", {})),
            metrics=self.optional(self.listen_address, raw.get("metrics"), "worker.metrics"),
            dead_server_after=self.number(raw.get("dead_server_after",
                                                  DEFAULT_DEAD_SERVER_AFTER),
                                          "worker.dead_server_after", 3.0),
        )

    def pools(self, raw: object) -> tuple[PoolConfig, ...]:
        raw = self.mapping(raw, "worker.pools", tuple(raw) if isinstance(raw, dict) else ())
        pools = []
        for name, entry in raw.items():
            key = f"worker.pools.{name}"
            if not isinstance(name, str) or not POOL_NAME.fullmatch(name):
                raise self.error("worker.pools", "pool names of letters, digits and _", name)
            entry = self.mapping(entry, key, ("processes", "threads", "functions"))
            functions = entry.get("functions")
            if (not isinstance(functions, list) or not functions
                    or not all(isinstance(f, str) and f for f in functions)):
                raise self.error(f"{key}.functions", "a non-empty list of function names",
                                 functions)
            pools.append(PoolConfig(
                name=name, functions=tuple(functions),
                processes=self.integer(entry.get("processes", 1), f"{key}.processes", 1,
                                       MAX_PROCESSES),
                threads=self.integer(entry.get("threads", DEFAULT_THREADS),
                                     f"{key}.threads", 1, MAX_THREADS)))
        return tuple(pools)
