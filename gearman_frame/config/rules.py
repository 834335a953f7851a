"""The checks every section is made of: each raises a ConfigError naming the file (or
the flag or variable a key came from), the key path, what was expected and what was
found."""
from __future__ import annotations

import difflib
import math
import os
import re
from typing import Any, Callable, Sequence

from ..addresses import parse_listen
from ..errors import ConfigError

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {None: 1, "b": 1, "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3,
          "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3}


class Rules:
    """The primitive checks; the sections' rules build on them.

    ``sources`` names where an overridden key came from (a flag, a variable), so its
    error names that instead of the file."""

    def __init__(self, path: str | None, sources: dict[str, str] | None = None,
                 connect: bool = True, cron: bool = True) -> None:
        self.path = path
        self.sources = sources or {}
        self.connect = connect
        #: Check cron expressions with croniter (False: a string is enough).
        self.cron = cron

    def beside_config(self, relative: str) -> str:
        """``relative`` resolved from the config file's folder."""
        base = os.path.dirname(os.path.abspath(self.path)) if self.path else os.getcwd()
        return os.path.join(base, relative)

    def error(self, key: str | None, expected: str, value: object = None,
              got: str | None = None) -> ConfigError:
        where = self.sources.get(key.split("[")[0]) if key else None
        if where:
            return ConfigError(where, None, expected, value, got=got)
        return ConfigError(self.path, key, expected, value, got=got)

    # -- shapes
    def mapping(self, value: object, key: str, allowed: Sequence[str]) -> dict:
        if not isinstance(value, dict):
            raise self.error(key, "a mapping", value)
        for name in value:
            if name not in allowed:
                near = difflib.get_close_matches(str(name), allowed, n=2)
                hint = (f" (did you mean {' or '.join(repr(n) for n in near)}?)"
                        if near else "")
                where = f"{key}.{name}" if key else str(name)
                raise self.error(where, f"one of {', '.join(allowed)}",
                                 got=f"unknown key '{name}'{hint}")
        return value

    def number(self, value: object, key: str, minimum: float = 0.0) -> float:
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or value < minimum):
            raise self.error(key, f"a number >= {minimum:g}", value)
        return float(value)

    def integer(self, value: object, key: str, minimum: int = 0,
                maximum: int | None = None) -> int:
        if (isinstance(value, bool) or not isinstance(value, int) or value < minimum
                or (maximum is not None and value > maximum)):
            bounds = f">= {minimum}" + ("" if maximum is None else f" and <= {maximum}")
            raise self.error(key, f"a whole number {bounds}", value)
        return value

    def size(self, value: object, key: str) -> int:
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

    def string(self, value: object, key: str, choices: Sequence[str] | None = None) -> str:
        if not isinstance(value, str) or not value:
            raise self.error(key, "a non-empty string", value)
        if choices and value not in choices:
            raise self.error(key, f"one of {', '.join(choices)}", value)
        return value

    def boolean(self, value: object, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(key, "true or false", value)
        return value

    def optional(self, check: Callable[..., Any], value: object, key: str,
                 *args: Any) -> Any:
        return None if value is None else check(value, key, *args)

    def listen_address(self, value: object, key: str) -> str:
        """``HOST:PORT`` to listen on (a port from 1 to 65535)."""
        expected = "HOST:PORT to listen on (e.g. 127.0.0.1:9464)"
        if not isinstance(value, str):
            raise self.error(key, expected, value)
        try:
            parse_listen(value)
        except ValueError:
            raise self.error(key, expected, value) from None
        return value
