"""Loading config.yaml: the file, the environment and the command line's overrides,
through one validator (every section's rules) into a :class:`Config`."""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import yaml

from ..errors import ConfigError
from .defaults import DEFAULT_CONFIG_FILE, DEFAULT_SERVERS, ENV_CONFIG, ENV_SERVERS
from .client import ClientRules
from .functions import FunctionRules
from .model import Config
from .security import SecurityRules
from .servers import ServerRules
from .services import ServiceRules
from .store import StoreRules
from .tracing import TracingRules, environment_layer
from .worker import WorkerRules

_TOP_KEYS = ("servers", "logging", "client", "worker", "server", "security", "tls",
             "web", "plugins", "functions", "schedules", "scheduler", "store",
             "tracing")


class Validator(ServerRules, ClientRules, WorkerRules, SecurityRules, FunctionRules,
                ServiceRules, StoreRules, TracingRules):
    """Turns the parsed YAML into a Config, raising ConfigError at the first problem."""

    def config(self, raw: object) -> Config:
        raw = self.mapping(raw, "", _TOP_KEYS)
        servers = self.servers(raw.get("servers", [str(s) for s in DEFAULT_SERVERS]))
        functions = self.functions(raw.get("functions") or {})
        store = self.store(raw.get("store") or {})
        capped = [f for f in functions.values() if f.capped]
        if capped and store.url is None:
            which = "concurrency" if capped[0].concurrency is not None else "rate"
            raise self.error(f"functions.{capped[0].name}.{which}",
                             "store.url set beside it (a fleet-wide cap is counted in the "
                             "job ledger)", got="store.url is off")
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
            functions=functions,
            schedules=self.schedules(raw.get("schedules") or {}),
            scheduler=self.scheduler(raw.get("scheduler") or {}),
            store=store,
            tracing=self.tracing(raw.get("tracing") or {}),
        )


def config_path(explicit: str | os.PathLike | None = None,
                environ: Mapping[str, str] | None = None) -> str | None:
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
               if environ.get(ENV_SERVERS) else {}), environment_layer(environ),
              dict(overrides or {})]
    for layer in layers:
        for key, (where, value) in layer.items():
            raw = _set(raw, key.split("."), value, path)
            sources[key] = where
    return Validator(path, sources, connect, cron).config(raw)


def _set(raw: object, keys: list[str], value: object, path: str | None) -> dict:
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

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases = getattr(self, "_aliases", 0) + 1
            if self._aliases > MAX_YAML_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_YAML_ALIASES} aliases")
        return super().compose_node(parent, index)


def _read_yaml(path: str) -> object:
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
