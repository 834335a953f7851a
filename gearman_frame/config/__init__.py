"""config.yaml: loaded once into frozen dataclasses, validated at load.

Precedence is CLI > environment > file > defaults: :func:`load_config` applies the file and
the environment (``GEARMAN_FRAME_CONFIG`` picks the file, ``GEARMAN_FRAME_SERVERS``
overrides ``servers``); each CLI applies its own flags with :meth:`Config.replace`.
Every problem is one :class:`ConfigError` naming the file, the key path, what was
expected and what was found.

One module per section (``servers``, ``client``, ``worker``, ``security``,
``functions``, ``services``, ``store``, ``tracing``: each its dataclass and its rules), the primitive checks in
``rules``, every default once in ``defaults``, the whole in ``model``, and the loading
(one validator of every section's rules) in ``loading``.
"""
from .client import ClientConfig
from .defaults import (DEFAULT_CONFIG_FILE, DEFAULT_FUNCTION_TIMEOUT, DEFAULT_MAX_AGE,
                       DEFAULT_MAX_KWARGS, DEFAULT_OUTPUT_LIMIT, DEFAULT_PROGRESS_INTERVAL,
                       DEFAULT_RESULT_STORE, DEFAULT_SERVERS, ENV_CONFIG, ENV_SERVERS)
from ..errors import ConfigError
from .functions import FunctionConfig
from .loading import MAX_YAML_ALIASES, Validator, config_path, load_config
from .model import Config
from .security import SecurityConfig, protected_mode
from .services import LoggingConfig, SchedulerConfig, ServerConfig, WebConfig
from .store import StoreConfig
from .tracing import TracingConfig
from .worker import PoolConfig, WorkerConfig

__all__ = ["ClientConfig", "Config", "ConfigError", "FunctionConfig", "LoggingConfig",
           "PoolConfig", "SchedulerConfig", "SecurityConfig", "ServerConfig", "StoreConfig",
           "TracingConfig",
           "Validator",
           "WebConfig", "WorkerConfig", "config_path", "load_config", "protected_mode",
           "MAX_YAML_ALIASES",
           "DEFAULT_CONFIG_FILE", "DEFAULT_FUNCTION_TIMEOUT", "DEFAULT_MAX_AGE",
           "DEFAULT_MAX_KWARGS", "DEFAULT_OUTPUT_LIMIT", "DEFAULT_PROGRESS_INTERVAL",
           "DEFAULT_RESULT_STORE", "DEFAULT_SERVERS", "ENV_CONFIG", "ENV_SERVERS"]
