"""``store:``: the job ledger (claims, outcomes, results from any host).

``url`` is ``sqlite:///PATH`` (relative to the config file's folder; ``sqlite:////ABS``
for an absolute path), ``postgresql://USER[:PASSWORD]@HOST:PORT/DB`` for a fleet, or
``off``. It is resolved here, so every role sees an absolute SQLite path.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..delays import DURATION_HELP, parse_duration
from .defaults import (DEFAULT_DEDUP_TTL, DEFAULT_LEASE, DEFAULT_REQUEUE_AFTER,
                       DEFAULT_RESULT_TTL, DEFAULT_STORE_URL)
from .rules import Rules

#: The shortest lease: a renewal every third of it must be able to keep up.
MIN_LEASE = 3.0


@dataclass(frozen=True)
class StoreConfig:
    """``store:`` (see the module docstring); ``url`` None: the ledger is off."""

    url: str | None = None
    lease: float = DEFAULT_LEASE
    result_ttl: float = DEFAULT_RESULT_TTL
    dedup_ttl: float = DEFAULT_DEDUP_TTL
    requeue_after: float = DEFAULT_REQUEUE_AFTER

    @property
    def on(self) -> bool:
        return self.url is not None


class StoreRules(Rules):
    def store(self, raw: Any) -> StoreConfig:
        raw = self.mapping(raw, "store", ("url", "lease", "result_ttl", "dedup_ttl",
                                          "requeue_after"))
        return StoreConfig(
            url=self.store_url(raw.get("url", DEFAULT_STORE_URL), "store.url"),
            lease=self.duration(raw.get("lease", DEFAULT_LEASE), "store.lease", MIN_LEASE),
            result_ttl=self.duration(raw.get("result_ttl", DEFAULT_RESULT_TTL),
                                     "store.result_ttl"),
            dedup_ttl=self.duration(raw.get("dedup_ttl", DEFAULT_DEDUP_TTL),
                                    "store.dedup_ttl"),
            requeue_after=self.duration(raw.get("requeue_after", DEFAULT_REQUEUE_AFTER),
                                        "store.requeue_after"),
        )

    def duration(self, value: object, key: str, minimum: float = 1.0) -> float:
        """Seconds, or a duration like 30s, 10m, 24h, 7d; at least ``minimum``."""
        try:
            seconds = parse_duration(value)
        except ValueError:
            seconds = -1.0
        if seconds < minimum:
            raise self.error(key, f"{DURATION_HELP}, at least {minimum:g} s", value)
        return seconds

    def store_url(self, value: object, key: str) -> str | None:
        expected = "off, sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE"
        if value is False:  # YAML reads a bare `off` as false
            return None
        text = self.string(value, key)
        if text == "off":
            return None
        if text.startswith("sqlite:///") and len(text) > len("sqlite:///"):
            path = text[len("sqlite:///"):]
            return "sqlite:///" + (path if path.startswith("/") else self.beside_config(path))
        if text.startswith(("postgresql://", "postgres://")):
            try:
                parts = urlsplit(text)
                port = parts.port
            except ValueError:
                raise self.error(key, expected, text) from None
            if not parts.hostname or not parts.path.strip("/") or (port is not None and port < 1):
                raise self.error(key, expected + " (a host and a database)", text)
            return text
        raise self.error(key, expected, text)
