"""config.yaml: loaded once into frozen dataclasses, validated at load.

Precedence is CLI > environment > file > defaults: :func:`load_config` applies the file and
the environment (``GEARMAN_FRAME_CONFIG`` picks the file, ``GEARMAN_FRAME_SERVERS``
overrides ``servers``); each CLI applies its own flags with :meth:`Config.replace`.
Every problem is one :class:`ConfigError` naming the file, the key path, what was
expected and what was found.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import socket
from dataclasses import dataclass, field
from collections.abc import Mapping

import yaml
from typing import Any

from .addresses import (DEFAULT_PORT, ServerAddress, parse_address, parse_address_list,
                        parse_listen)
from .delays import DURATION_HELP, MAX_DELAY, parse_duration
from .defaults import DEFAULT_CONFIG_FILE, DEFAULT_RESULT_STORE, ENV_CONFIG
from .errors import ConfigError
from .retry import DEFAULT_BACKOFF, DEFAULT_RETRIES, DEFAULT_RETRY_DELAY, RetryPolicy
from .templates import TemplateError, fields_of

#: Environment variable overriding ``servers`` (comma-separated ``host:port``).
ENV_SERVERS = "GEARMAN_FRAME_SERVERS"

#: Job servers used when the config names none: a local gearmand.
DEFAULT_SERVERS = (ServerAddress("127.0.0.1", DEFAULT_PORT),)
#: Seconds a foreground submit waits for its result before resending.
DEFAULT_CLIENT_TIMEOUT = 30.0
#: Resends of one job (same unique id) after a timeout or a lost connection.
DEFAULT_RESEND = 3
#: SQLite file holding background jobs no server accepted (relative to the config file).
DEFAULT_OUTBOX = "var/outbox.sqlite"
#: How long sendjob keeps the results it received (seconds: 7 days).
DEFAULT_RESULT_TTL = 7 * 86400.0
#: Worker name template; ``{hostname}`` and ``{pid}`` are filled in at start.
DEFAULT_WORKER_NAME = "{hostname}"
#: Worker threads per ``runworkers`` process.
DEFAULT_THREADS = 4
#: Most worker processes one supervisor runs.
MAX_PROCESSES = 256
_POOL_NAME = re.compile(r"[A-Za-z0-9_]{1,40}")
#: Largest job payload a worker takes (bytes); a larger one is read past as it arrives
#: and refused, so it never grows the worker's memory.
DEFAULT_MAX_PAYLOAD = 64 * 1024 * 1024
#: Most kwargs a job may have (an envelope with many more strings is refused before it
#: is decoded).
DEFAULT_MAX_KWARGS = 10_000
#: Bytes of a command's output kept per stream (a raw job's stdout: its first bytes; a
#: JSON job's: its last, at most TAIL_BYTES); the rest is counted and dropped.
DEFAULT_OUTPUT_LIMIT = 1024 * 1024
#: Most worker threads one process may have (each holds a connection per server).
MAX_THREADS = 1024
#: Seconds a graceful stop lets running commands finish before killing them.
DEFAULT_GRACE = 30.0
#: Seconds ``runworkers`` waits for a first server before exiting with code 3.
DEFAULT_STARTUP_TIMEOUT = 30.0
#: Seconds between two WORK_STATUS progress reports while a command runs.
DEFAULT_PROGRESS_INTERVAL = 5.0
#: Seconds a function's command may run before its process group is killed.
DEFAULT_FUNCTION_TIMEOUT = 300.0
#: Times gearmand hands out a job whose worker vanished while holding it (died, or left it
#: unanswered) before it drops the job: bounds a job that kills its worker every time.
DEFAULT_JOB_RETRIES = 10
#: Seconds a signed job stays acceptable after (and before) it was signed.
DEFAULT_MAX_AGE = 300.0
#: Seconds a worker gives a silent server before it drops the connection (keepalive).
DEFAULT_DEAD_SERVER_AFTER = 15.0
#: Seconds ahead a scheduler queues occurrences (gearmand holds them until their time).
DEFAULT_SCHEDULER_LEAD = 20.0
#: Largest function name gearmand handles (it drops the connection at 8192 bytes).
MAX_FUNCTION_NAME_BYTES = 8191
#: Function-name prefix reserved for gearman-frame's own queues (control, dead letters).
RESERVED_PREFIX = "__"

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class LoggingConfig:
    """``logging:`` — level, optional rotating file, text or JSON lines."""

    level: str = "INFO"
    file: str | None = None
    format: str = "text"


@dataclass(frozen=True)
class ClientConfig:
    """``client:`` — how senders wait, resend and keep undeliverable jobs."""

    timeout: float = DEFAULT_CLIENT_TIMEOUT
    resend: int = DEFAULT_RESEND
    outbox: str = DEFAULT_OUTBOX
    #: The result channel of background jobs ({hostname} filled in); None: results off.
    results: str | None = None
    result_store: str = DEFAULT_RESULT_STORE
    result_ttl: float = DEFAULT_RESULT_TTL


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


@dataclass(frozen=True)
class ServerConfig:
    """``server:`` — how ``runadmin server`` runs the local gearmand."""

    job_retries: int = DEFAULT_JOB_RETRIES


@dataclass(frozen=True)
class WebConfig:
    """``web:`` — `runadmin web`'s token file (resolved beside the config; needed to
    listen anywhere but loopback)."""

    token_file: str | None = None


@dataclass(frozen=True)
class SchedulerConfig:
    """``scheduler:`` — how `sendjob scheduler` shares its schedules with the others:
    the lease group (schedulers of one group fire each occurrence once), its state file
    (beside the config) and how far ahead it queues occurrences (seconds; a scheduler
    that takes over within this time neither skips nor repeats one)."""

    group: str = "default"
    state: str = "var/schedules.json"
    lead: float = DEFAULT_SCHEDULER_LEAD


@dataclass(frozen=True)
class SecurityConfig:
    """``security:`` — the fleet's signing key, older keys still accepted, the window."""

    key_file: str | None = None
    accept_key_files: tuple = ()
    max_age: float = DEFAULT_MAX_AGE
    #: The signing.Keyring, read and checked at load (None: signing is off).
    keyring: object = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class FunctionConfig:
    """One entry of ``functions:``; a Gearman function served by workers."""

    name: str
    command: tuple | None = None
    shell: str | None = None
    stdin: str | None = None
    raw_shell: bool = False
    timeout: float = DEFAULT_FUNCTION_TIMEOUT
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    maxqueue: int | None = None
    cwd: str | None = None
    env: dict = field(default_factory=dict)
    #: Fields whose value may begin an argument with '-' (read as an option).
    allow_options: frozenset = frozenset()
    output_limit: int = DEFAULT_OUTPUT_LIMIT
    #: With a key configured: take raw and unsigned jobs anyway (interop, on purpose).
    allow_unsigned: bool = False
    #: ``dead_letter: {requeue_after, max_requeues}``: a job that failed for good goes back
    #: to the function after this many seconds, up to this many times (0: never).
    requeue_after: float = 0.0
    max_requeues: int = 0

    @property
    def fields(self):
        """The ``{field}`` names a job must supply (empty for a Python task)."""
        if self.command:
            return fields_of(self.command)
        if self.shell:
            return fields_of([self.shell])
        return set()

    @property
    def is_external(self):
        """True if the function runs a process rather than a Python @task."""
        return bool(self.command or self.shell or self.raw_shell)


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
    #: ``schedules:`` (gearman_frame.schedules.Schedule each) and how they are run.
    schedules: tuple = ()
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)

    def replace(self, **changes):
        """Return a copy with top-level fields replaced (CLI overrides)."""
        return dataclasses.replace(self, **changes)

    def resolve(self, relative):
        """Resolve a path from the config relative to the config file's folder."""
        if relative is None:
            return None
        base = os.path.dirname(os.path.abspath(self.path)) if self.path else os.getcwd()
        return os.path.realpath(os.path.join(base, relative))

    @property
    def keyring(self):
        """The fleet's Keyring, or None when no key is configured (signing off)."""
        return self.security.keyring

    def warnings(self):
        """Settings that are valid but risky, one line each (logged at worker start)."""
        found = []
        if self.keyring is not None:
            found += [f"{self.path}: functions.{name}: raw_shell with allow_unsigned runs "
                      "any shell line anyone who reaches gearmand sends"
                      for name, fn in self.functions.items()
                      if fn.raw_shell and fn.allow_unsigned]
        return found

    def check_pools(self, served):
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

    def check_tasks(self, task_names):
        """Raise ConfigError for a function with no command, no shell and no @task."""
        for name, fn in self.functions.items():
            if not fn.is_external and name not in task_names:
                raise ConfigError(
                    self.path, f"functions.{name}",
                    "'command', 'shell' or 'raw_shell', or a @task of that name in "
                    f"the plugins {list(self.plugins)}",
                    got="found none of them")


# --- loading -------------------------------------------------------------------------

def config_path(explicit=None, environ=None):
    """Pick the config file: explicit path, then ``$GEARMAN_FRAME_CONFIG``, then
    ``./config.yaml`` if it exists; None means 'defaults only'."""
    environ = os.environ if environ is None else environ
    if explicit:
        return str(explicit)
    if environ.get(ENV_CONFIG):
        return environ[ENV_CONFIG]
    return DEFAULT_CONFIG_FILE if os.path.exists(DEFAULT_CONFIG_FILE) else None


def load_config(explicit: str | os.PathLike | None = None,
                environ: Mapping[str, str] | None = None,
                overrides: Mapping[str, tuple[str, Any]] | None = None,
                connect: bool = True, cron: bool = True) -> Config:
    """Load, validate and return the :class:`Config`: command-line ``overrides`` >
    environment > file > defaults, all through one validator.

    ``overrides`` maps a key path to ``(where, value)``, e.g. ``{"worker.threads":
    ("--threads", 8)}``; a bad value is a ConfigError naming ``where`` (the flag).
    ``connect=False`` skips reading the TLS files (``runadmin server``, which makes them);
    ``cron=False`` checks schedules' cron expressions for shape only (a worker).
    """
    environ = os.environ if environ is None else environ
    path = config_path(explicit, environ)
    raw = _read_yaml(path) if path else {}
    sources = {}
    layers = [({"servers": (f"${ENV_SERVERS}", environ[ENV_SERVERS])}
               if environ.get(ENV_SERVERS) else {}), dict(overrides or {})]
    for layer in layers:
        for key, (where, value) in layer.items():
            raw = _set(raw, key.split("."), value, path)
            sources[key] = where
    return _Validator(path, sources, connect, cron).config(raw)


def _set(raw, keys, value, path):
    """A copy of the parsed YAML ``raw`` with ``keys`` (a key path) set to ``value``."""
    if not isinstance(raw, dict):
        raise ConfigError(path, None, "a mapping at the top", raw)
    if len(keys) == 1:
        return {**raw, keys[0]: value}
    inner = raw.get(keys[0]) or {}
    return {**raw, keys[0]: _set(inner, keys[1:], value, path)}


#: Most YAML aliases (``*name``) a config may use: a few are handy, thousands are an
#: attack (a 442-byte "billion laughs" file hung the loader for 30 s).
MAX_YAML_ALIASES = 100


class _BoundedLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a document with more than MAX_YAML_ALIASES aliases."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases = getattr(self, "_aliases", 0) + 1
            if self._aliases > MAX_YAML_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_YAML_ALIASES} aliases")
        return super().compose_node(parent, index)


def _read_yaml(path):
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.load(handle, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader
    except FileNotFoundError as err:
        raise ConfigError(path, None, "an existing YAML file", got="file not found") from err
    except OSError as err:
        raise ConfigError(path, None, "a readable YAML file", got=err.strerror) from err
    except UnicodeDecodeError as err:
        raise ConfigError(path, None, "UTF-8 text", got="undecodable bytes") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(where, None, "valid YAML", got=f"YAML syntax error: {problem}") from err
    return {} if data is None else data


_TOP_KEYS = ("servers", "logging", "client", "worker", "server", "security", "tls",
             "web", "plugins", "functions", "schedules", "scheduler")
_FUNCTION_KEYS = ("command", "shell", "stdin", "raw_shell", "timeout", "retries",
                  "retry_delay", "backoff", "maxqueue", "cwd", "env", "allow_options",
                  "output_limit", "allow_unsigned", "dead_letter")


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {None: 1, "b": 1, "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3,
          "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3}


class _Validator:
    """Turns the parsed YAML into a Config, raising ConfigError at the first problem.

    ``sources`` names where an overridden key came from (a flag, a variable), so its
    error names that instead of the file."""

    def __init__(self, path, sources=None, connect=True, cron=True):
        self.path = path
        self.sources = sources or {}
        self.connect = connect
        #: Check cron expressions with croniter (False: a string is enough).
        self.cron = cron

    def error(self, key, expected, value=None, got=None):
        where = self.sources.get(key.split("[")[0]) if key else None
        if where:
            return ConfigError(where, None, expected, value, got=got)
        return ConfigError(self.path, key, expected, value, got=got)

    # -- shapes
    def mapping(self, value, key, allowed):
        if not isinstance(value, dict):
            raise self.error(key, "a mapping", value)
        for name in value:
            if name not in allowed:
                import difflib
                near = difflib.get_close_matches(str(name), allowed, n=2)
                hint = (f" (did you mean {' or '.join(repr(n) for n in near)}?)"
                        if near else "")
                where = f"{key}.{name}" if key else str(name)
                raise self.error(where, f"one of {', '.join(allowed)}",
                                 got=f"unknown key '{name}'{hint}")
        return value

    def number(self, value, key, minimum=0.0):
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or value < minimum):
            raise self.error(key, f"a number >= {minimum:g}", value)
        return float(value)

    def integer(self, value, key, minimum=0, maximum=None):
        if (isinstance(value, bool) or not isinstance(value, int) or value < minimum
                or (maximum is not None and value > maximum)):
            bounds = f">= {minimum}" + ("" if maximum is None else f" and <= {maximum}")
            raise self.error(key, f"a whole number {bounds}", value)
        return value

    def size(self, value, key):
        """Bytes: a whole number, or a number with a unit (``512KiB``, ``1 MiB``, ``2GB``)."""
        expected = "a size in bytes >= 1 (a number, or one with KiB, MiB, GiB, KB, MB, GB)"
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                raise self.error(key, expected, value)
            return value
        match = _SIZE.match(value) if isinstance(value, str) else None
        if not match:
            raise self.error(key, expected, value)
        number = float(match.group(1)) * _UNITS[(match.group(2) or "b").lower()]
        if number < 1:
            raise self.error(key, expected, value)
        return int(number)

    def string(self, value, key, choices=None):
        if not isinstance(value, str) or not value:
            raise self.error(key, "a non-empty string", value)
        if choices and value not in choices:
            raise self.error(key, f"one of {', '.join(choices)}", value)
        return value

    def boolean(self, value, key):
        if not isinstance(value, bool):
            raise self.error(key, "true or false", value)
        return value

    def optional(self, check, value, key, *args):
        return None if value is None else check(value, key, *args)

    # -- sections
    def config(self, raw):
        raw = self.mapping(raw, "", _TOP_KEYS)
        servers = self.servers(raw.get("servers", [str(s) for s in DEFAULT_SERVERS]))
        return Config(
            path=self.path,
            servers=self.with_tls(servers, raw.get("tls") or {}),
            logging=self.logging(raw.get("logging") or {}),
            client=self.client(raw.get("client") or {}),
            worker=self.worker(raw.get("worker") or {}),
            server=self.server(raw.get("server") or {}),
            security=self.security(raw.get("security") or {}),
            web=self.web(raw.get("web") or {}),
            plugins=self.plugins(raw.get("plugins") or []),
            functions=self.functions(raw.get("functions") or {}),
            schedules=self.schedules(raw.get("schedules") or {}),
            scheduler=self.scheduler(raw.get("scheduler") or {}),
        )

    def schedules(self, raw):
        if not raw:
            return ()
        from .schedules import check_schedules  # croniter only for configs with schedules
        return check_schedules(self, raw)

    def scheduler(self, raw):
        raw = self.mapping(raw, "scheduler", ("group", "state", "lead"))
        group = self.string(raw.get("group", "default"), "scheduler.group")
        if not _POOL_NAME.fullmatch(group):
            raise self.error("scheduler.group", "a name of letters, digits and _", group)
        return SchedulerConfig(
            group=group,
            state=self.string(raw.get("state", "var/schedules.json"), "scheduler.state"),
            lead=self.number(raw.get("lead", DEFAULT_SCHEDULER_LEAD), "scheduler.lead", 1.0))

    def servers(self, value):
        if isinstance(value, str):  # "host:port,host:port" (a flag or a variable)
            try:
                return tuple(parse_address_list(value))
            except ValueError as err:
                raise self.error("servers", str(err), value) from err
        if not isinstance(value, list) or not value:
            raise self.error("servers", "a non-empty list of 'host:port'", value)
        result = []
        for i, item in enumerate(value):
            try:
                result.append(parse_address(item))
            except ValueError as err:
                raise self.error(f"servers[{i}]", str(err), item) from err
        return tuple(result)

    def with_tls(self, servers, raw):
        """The servers, each tls:// one given the TLS client the ``tls`` section makes
        (ssl is imported only when there is one)."""
        raw = self.mapping(raw, "tls", ("ca_file", "cert_file", "key_file",
                                        "verify_hostname"))
        files = {name: self.optional(self.string, raw.get(name), f"tls.{name}")
                 for name in ("ca_file", "cert_file", "key_file")}
        verify = self.boolean(raw.get("verify_hostname", True), "tls.verify_hostname")
        if files["key_file"] and not files["cert_file"]:
            raise self.error("tls.cert_file", "a client certificate beside tls.key_file",
                             got="none")
        if not self.connect or not any(s.tls for s in servers):
            return servers
        from .tls import TlsClient
        base = os.path.dirname(os.path.abspath(self.path)) if self.path else os.getcwd()
        paths = {k: os.path.join(base, v) if v else None for k, v in files.items()}
        client = TlsClient(paths["ca_file"], paths["cert_file"], paths["key_file"], verify,
                           config_path=self.path)
        return tuple(dataclasses.replace(s, tls_client=client) if s.tls else s
                     for s in servers)

    def logging(self, raw):
        raw = self.mapping(raw, "logging", ("level", "file", "format"))
        level = raw.get("level", "INFO")
        level = self.string(level.upper() if isinstance(level, str) else level,
                            "logging.level", LOG_LEVELS)
        return LoggingConfig(
            level=level,
            file=self.optional(self.string, raw.get("file"), "logging.file"),
            format=self.string(raw.get("format", "text"), "logging.format", LOG_FORMATS),
        )

    def client(self, raw):
        raw = self.mapping(raw, "client", ("timeout", "resend", "outbox", "results",
                                           "result_store", "result_ttl"))
        return ClientConfig(
            timeout=self.number(raw.get("timeout", DEFAULT_CLIENT_TIMEOUT), "client.timeout"),
            resend=self.integer(raw.get("resend", DEFAULT_RESEND), "client.resend"),
            outbox=self.string(raw.get("outbox", DEFAULT_OUTBOX), "client.outbox"),
            results=self.channel(raw.get("results"), "client.results"),
            result_store=self.string(raw.get("result_store", DEFAULT_RESULT_STORE),
                                     "client.result_store"),
            result_ttl=self.number(raw.get("result_ttl", DEFAULT_RESULT_TTL),
                                   "client.result_ttl", 1.0),
        )

    def channel(self, value, key):
        """A result channel name: ``{hostname}`` filled in; no whitespace or NUL."""
        if value is None:
            return None
        value = self.string(value, key)
        try:
            unknown = fields_of([value]) - {"hostname"}
        except TemplateError as err:
            raise self.error(key, str(err), value) from err
        if unknown:
            raise self.error(key, "a channel name (only the field {hostname})", value)
        name = value.format(hostname=socket.gethostname())
        if any(c.isspace() or c == "\0" for c in name) or len(name) > 200:
            raise self.error(key, "a channel name of at most 200 characters without "
                                  "spaces", value)
        return name

    def worker(self, raw):
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

    def listen_address(self, value, key):
        """``HOST:PORT`` to listen on (a port from 1 to 65535)."""
        try:
            parse_listen(value if isinstance(value, str) else "")
        except ValueError:
            raise self.error(key, "HOST:PORT to listen on (e.g. 127.0.0.1:9464)",
                             value) from None
        return value

    def pools(self, raw):
        raw = self.mapping(raw, "worker.pools", tuple(raw) if isinstance(raw, dict) else ())
        pools = []
        for name, entry in raw.items():
            key = f"worker.pools.{name}"
            if not isinstance(name, str) or not _POOL_NAME.fullmatch(name):
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

    def server(self, raw):
        raw = self.mapping(raw, "server", ("job_retries",))
        return ServerConfig(job_retries=self.integer(raw.get("job_retries", DEFAULT_JOB_RETRIES),
                                                     "server.job_retries", 1))

    def security(self, raw):
        raw = self.mapping(raw, "security", ("key_file", "accept_key_files", "max_age"))
        key_file = self.optional(self.string, raw.get("key_file"), "security.key_file")
        accept = raw.get("accept_key_files") or []
        if not isinstance(accept, list) or not all(isinstance(a, str) and a for a in accept):
            raise self.error("security.accept_key_files", "a list of key file paths", accept)
        if accept and key_file is None:
            raise self.error("security.key_file", "a key file beside accept_key_files",
                             got="none")
        max_age = raw.get("max_age", DEFAULT_MAX_AGE)
        if (isinstance(max_age, bool) or not isinstance(max_age, (int, float))
                or not 1 <= max_age <= 7 * 86400):
            raise self.error("security.max_age", "seconds from 1 to 604800", max_age)
        keyring = None
        if key_file is not None:  # signing (and hashlib's OpenSSL) only with a key
            from .signing import keyring_from_files
            base = os.path.dirname(os.path.abspath(self.path)) if self.path else os.getcwd()
            where = [os.path.join(base, path) for path in (key_file, *accept)]
            keyring = keyring_from_files(self.path, where[0], where[1:], float(max_age))
        return SecurityConfig(key_file=key_file, accept_key_files=tuple(accept),
                              max_age=float(max_age), keyring=keyring)

    def web(self, raw):
        raw = self.mapping(raw, "web", ("token_file",))
        token_file = self.optional(self.string, raw.get("token_file"), "web.token_file")
        if token_file is not None:
            base = os.path.dirname(os.path.abspath(self.path)) if self.path else os.getcwd()
            token_file = os.path.join(base, token_file)
        return WebConfig(token_file=token_file)

    def plugins(self, value):
        if not isinstance(value, list):
            raise self.error("plugins", "a list of module names", value)
        for i, item in enumerate(value):
            ok = isinstance(item, str) and all(p.isidentifier() for p in item.split("."))
            if not ok:
                raise self.error(f"plugins[{i}]", "a dotted module name", item)
        return tuple(value)

    def functions(self, raw):
        if not isinstance(raw, dict):
            raise self.error("functions", "a mapping of function names", raw)
        return {self.function_name(name): self.function(name, spec or {})
                for name, spec in raw.items()}

    def function_name(self, name):
        key = f"functions.{name}"
        if not isinstance(name, str) or not name or "\0" in name:
            raise self.error(key, "a non-empty function name", name)
        if name.startswith(RESERVED_PREFIX):
            raise self.error(key, f"a name not starting with '{RESERVED_PREFIX}' (reserved)",
                             name)
        if len(name.encode("utf-8")) > MAX_FUNCTION_NAME_BYTES:
            raise self.error(key, f"a name of at most {MAX_FUNCTION_NAME_BYTES} bytes",
                             got=f"{len(name.encode('utf-8'))} bytes")
        return name

    def function(self, name, raw):
        key = f"functions.{name}"
        raw = self.mapping(raw, key, _FUNCTION_KEYS)
        command = raw.get("command")
        if command is not None:
            if (not isinstance(command, list) or not command
                    or not all(isinstance(a, str) for a in command)):
                raise self.error(f"{key}.command", "a non-empty list of strings (argv)",
                                 command)
            command = tuple(command)
        shell = self.optional(self.string, raw.get("shell"), f"{key}.shell")
        if command and shell:
            raise self.error(key, "either 'command' or 'shell', not both",
                             got="both are set")
        for sub, templates in (("command", command), ("shell", [shell] if shell else None)):
            if templates:
                try:
                    fields_of(templates)
                except TemplateError as err:
                    raise self.error(f"{key}.{sub}", str(err), got="a bad template") from err
        raw_shell = self.boolean(raw.get("raw_shell", False), f"{key}.raw_shell")
        if raw_shell and (command or shell):
            raise self.error(f"{key}.raw_shell", "no 'command' or 'shell' beside it",
                             got="both set")
        try:
            retry = RetryPolicy(
                retries=self.integer(raw.get("retries", DEFAULT_RETRIES), f"{key}.retries"),
                delay=self.number(raw.get("retry_delay", DEFAULT_RETRY_DELAY),
                                  f"{key}.retry_delay"),
                backoff=self.number(raw.get("backoff", DEFAULT_BACKOFF), f"{key}.backoff", 1),
            )
        except ValueError as err:  # pragma: no cover - the checks above come first
            raise self.error(key, str(err), got="a bad retry policy") from err
        env = raw.get("env") or {}
        if not isinstance(env, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            raise self.error(f"{key}.env", "a mapping of strings to strings", env)
        allow = raw.get("allow_options") or []
        fields = fields_of(command or ([shell] if shell else []))
        if not isinstance(allow, list) or not all(isinstance(a, str) and a in fields
                                                  for a in allow):
            raise self.error(f"{key}.allow_options",
                             f"a list of this function's template fields "
                             f"({', '.join(sorted(fields)) or 'none'})", allow)
        return FunctionConfig(
            name=name,
            command=command,
            shell=shell,
            stdin=self.optional(self.string, raw.get("stdin"), f"{key}.stdin", ("data",)),
            raw_shell=raw_shell,
            timeout=self.number(raw.get("timeout", DEFAULT_FUNCTION_TIMEOUT), f"{key}.timeout"),
            retry=retry,
            maxqueue=self.optional(self.integer, raw.get("maxqueue"), f"{key}.maxqueue"),
            cwd=self.optional(self.string, raw.get("cwd"), f"{key}.cwd"),
            env=dict(env),
            allow_options=frozenset(allow),
            output_limit=self.size(raw.get("output_limit", DEFAULT_OUTPUT_LIMIT),
                                   f"{key}.output_limit"),
            allow_unsigned=self.boolean(raw.get("allow_unsigned", False),
                                        f"{key}.allow_unsigned"),
            **self.dead_letter(raw.get("dead_letter"), f"{key}.dead_letter"),
        )

    def dead_letter(self, raw, key):
        """``dead_letter: {requeue_after: DURATION, max_requeues: N}`` (both, or neither)."""
        if raw is None:
            return {}
        raw = self.mapping(raw, key, ("requeue_after", "max_requeues"))
        if "requeue_after" not in raw or "max_requeues" not in raw:
            raise self.error(key, "both requeue_after and max_requeues",
                             got=f"only {', '.join(raw) or 'nothing'}")
        try:
            after = parse_duration(raw["requeue_after"])
        except ValueError:
            after = 0.0
        if not 0 < after <= MAX_DELAY:
            raise self.error(f"{key}.requeue_after", f"{DURATION_HELP}, > 0 and at most a "
                             "year", raw["requeue_after"])
        return {"requeue_after": after,
                "max_requeues": self.integer(raw["max_requeues"], f"{key}.max_requeues", 1,
                                             1000)}
