"""``security:``: the fleet's signing key, older keys still accepted, the time window."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..signing import Keyring, keyring_from_files
from .defaults import DEFAULT_MAX_AGE
from .rules import Rules

@dataclass(frozen=True)
class SecurityConfig:
    """``security:`` — the fleet's signing key, older keys still accepted, the window."""

    key_file: str | None = None
    accept_key_files: tuple = ()
    max_age: float = DEFAULT_MAX_AGE
    #: The signing.Keyring, read and checked at load (None: signing is off).
    keyring: Keyring | None = field(default=None, compare=False, repr=False)


class SecurityRules(Rules):
    def security(self, raw: object) -> SecurityConfig:
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
        keyring: Keyring | None = None
        if key_file is not None:  # signing (and hashlib's OpenSSL) only with a key
            where = [self.beside_config(path) for path in (key_file, *accept)]
            keyring = keyring_from_files(self.path, where[0], where[1:], float(max_age))
        return SecurityConfig(key_file=key_file, accept_key_files=tuple(accept),
                              max_age=float(max_age), keyring=keyring)
