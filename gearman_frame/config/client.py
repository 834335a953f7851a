"""``client:``: how senders wait, resend, keep undeliverable jobs and their results."""
from __future__ import annotations

import socket
from typing import Any
from dataclasses import dataclass

from ..templates import TemplateError, fields_of
from .defaults import (DEFAULT_CLIENT_TIMEOUT, DEFAULT_OUTBOX, DEFAULT_RESEND, DEFAULT_RESULT_STORE,
                       DEFAULT_RESULT_TTL)
from .rules import Rules

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


class ClientRules(Rules):
    def client(self, raw: Any) -> ClientConfig:
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

    def channel(self, value: object, key: str) -> str | None:
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
