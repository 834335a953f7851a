"""``security:``: the fleet's signing key, older keys still accepted, the time window."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..signing import Keyring, keyring_from_files
from .defaults import DEFAULT_MAX_AGE
from .rules import Rules

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SecurityConfig:
    """``security:`` — the fleet's signing key, older keys still accepted, the window."""

    key_file: str | None = None
    accept_key_files: tuple = ()
    max_age: float = DEFAULT_MAX_AGE
    #: The signing.Keyring, read and checked at load (None: signing is off).
    keyring: Keyring | None = field(default=None, compare=False, repr=False)
    #: Run without a key although a server is reachable from other hosts (protected
    #: mode off: see ``protected_mode``).
    insecure: bool = False


class SecurityRules(Rules):
    def security(self, raw: object) -> SecurityConfig:
        raw = self.mapping(raw, "security", ("key_file", "accept_key_files", "max_age",
                                             "insecure"))
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
        keyring: Keyring | None = None
        if key_file is not None:  # signing (and hashlib's OpenSSL) only with a key
            where = [self.beside_config(path) for path in (key_file, *accept)]
            keyring = keyring_from_files(self.path, where[0], where[1:], float(max_age))
        return SecurityConfig(key_file=key_file, accept_key_files=tuple(accept),
                              max_age=float(max_age), keyring=keyring,
                              insecure=self.boolean(raw.get("insecure", False),
                                                    "security.insecure"))


def protected_mode(config: Any, role: str) -> str | None:
    """Protected mode (Redis's is the model): a worker, a scheduler or the dashboard with
    no key refuses to start while a configured server is reachable from other hosts, since
    anyone who reaches it could run this fleet's commands or stop its workers. ConfigError
    (exit 2) naming security.key_file and security.insecure; with ``security.insecure:
    true`` it starts, and the warning is logged and returned (None: nothing to say)."""
    remote = [str(s) for s in config.servers if not s.is_loopback]
    if config.keyring is not None or not remote:
        return None
    servers = f"{', '.join(remote)} {'is' if len(remote) == 1 else 'are'} not on loopback"
    if not config.security.insecure:
        raise ConfigError(config.path, "security.key_file",
                          f"a key file before {role} starts while {servers} (or "
                          "security.insecure: true to run unprotected)", got="none")
    warning = (f"signing is off (no security.key_file) and {servers}: anyone who reaches "
               "it can run this fleet's functions and stop its workers (security.insecure)")
    log.warning("%s", warning)
    return warning
