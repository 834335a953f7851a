"""Signed envelopes: who may run what on a fleet whose job server has no authentication.

With ``security.key_file`` set, every envelope a sender, worker or admin writes carries
``ts`` (when it was signed), ``kid`` (which key: a hash, never the key) and, last,
``"sig":"<64 hex>"``: an HMAC-SHA256, under that key, of the function name, a NUL byte,
and the envelope's exact JSON bytes without that last member (``BODY``: everything
before ``,"sig":``, then ``}``). The bytes that are signed are the bytes that are parsed
and run: no canonical form to agree on, in any language. A worker checks that signature,
that the key is one it accepts, that ``ts`` is within ``security.max_age`` of its clock,
and that it has not seen the signature in that window (a replay) before anything runs.
"""
from __future__ import annotations

import os
import stat
import threading
import time
from collections import deque

from .config import DEFAULT_MAX_AGE
from .envelope import dumps, parse_request
from .errors import ConfigError, EnvelopeError

#: Shortest secret a key file may hold (bytes, after trailing whitespace is removed).
MIN_KEY_BYTES = 16
#: What the sender of a refused job is told: nothing that helps to forge the next one.
REFUSED_REASON = "unauthenticated job"
#: Why-codes of :meth:`Keyring.check` (logged by the worker, never sent back).
UNSIGNED, UNKNOWN_KEY, BAD_SIGNATURE, EXPIRED, REPLAYED = (
    "unsigned", "signed with an unknown key", "bad signature",
    "timestamp outside security.max_age", "replayed")
#: (key, function) pairs whose HMAC state is kept ready (more are keyed each time).
_PREFIXED_MAX = 256


def _crypto():
    """hashlib and hmac, imported when a key is used: they load OpenSSL's libcrypto,
    3.7 MiB that a worker without a key does not carry."""
    import hashlib
    import hmac
    return hashlib, hmac


def key_id(secret: bytes) -> str:
    """The public name of a key: 16 hex characters of a hash of it."""
    hashlib, _hmac = _crypto()
    return hashlib.sha256(b"gearman-frame key id\0" + secret).hexdigest()[:16]


def read_key_file(path: str, config_path: str | None, key: str) -> bytes:
    """The secret in ``path``; ConfigError (naming the config file and ``key``) when the
    file is missing, not a regular file, readable by group or others, or too short."""
    def refuse(expected, got):
        return ConfigError(config_path, key, expected, got=f"{path}: {got}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        raise refuse("a readable key file", err.strerror) from err
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise refuse("a regular file", "not a regular file")
        if info.st_mode & 0o077:
            raise refuse("a file only its owner can read (chmod 600)",
                         f"mode {stat.S_IMODE(info.st_mode):04o}")
        secret = os.read(fd, 65536).rstrip(b"\r\n\t ")
    finally:
        os.close(fd)
    if len(secret) < MIN_KEY_BYTES:
        raise refuse(f"a secret of at least {MIN_KEY_BYTES} bytes "
                     "(e.g. `runadmin keygen FILE`)", f"{len(secret)} bytes")
    return secret


def new_key_text() -> bytes:
    """A fresh secret for a key file: 32 random bytes as hex, with a newline."""
    return os.urandom(32).hex().encode("ascii") + b"\n"


class Keyring:
    """The fleet's keys: one signs, every one (old keys during a rotation) verifies; and
    the signatures seen in the last ``max_age`` seconds, to refuse a replay."""

    def __init__(self, signing_key: bytes, accepted=(), max_age: float = DEFAULT_MAX_AGE):
        self.kid = key_id(signing_key)
        self.max_age = float(max_age)
        self._keys = {key_id(k): k for k in (signing_key, *accepted)}
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()
        hashlib, self._hmac = _crypto()
        #: Per key, an HMAC already fed the key: copying it costs less than keying anew.
        self._keyed = {kid: self._hmac.new(k, digestmod=hashlib.sha256)
                       for kid, k in self._keys.items()}
        #: Per (key, function), one already fed ``FUNCTION NUL`` too (a fleet has few).
        self._prefixed: dict[tuple[str, str], object] = {}
        #: When each remembered signature's window ends, oldest first (to sweep them).
        self._expiry: deque[tuple[float, str]] = deque()

    def _mac(self, kid, function, body):
        keyed = self._prefixed.get((kid, function))
        if keyed is None:
            keyed = self._keyed[kid].copy()
            keyed.update(function.encode("utf-8", "surrogateescape") + b"\0")
            if len(self._prefixed) < _PREFIXED_MAX:
                self._prefixed[(kid, function)] = keyed
        mac = keyed.copy()
        mac.update(body)
        return mac.hexdigest()

    # -- signing
    def sign(self, function: str, envelope: dict, now: float | None = None) -> bytes:
        """``envelope`` (an envelope object) encoded, with a fresh ts and kid, and its
        signature appended as the last member. A delayed job's ts is its start time
        (``at``), so it is fresh when it comes due however long it was held."""
        fields = dict(envelope)
        fields.pop("sig", None)
        if now is None:
            at = fields.get("at")
            now = time.time()
            if isinstance(at, (int, float)) and not isinstance(at, bool) and at > now:
                now = at
        fields["ts"] = int(now)  # whole seconds: enough
        fields["kid"] = self.kid
        body = dumps(fields)
        return body[:-1] + b',"sig":"' + self._mac(self.kid, function, body).encode() + b'"}'

    def resign(self, function: str, data: bytes) -> bytes:
        """Sign an encoded envelope again (a job kept in the outbox, a resent dump line):
        a new ts, so it is fresh when it is sent. Raw payloads are returned as they are."""
        obj = self.envelope_object(data)
        return data if obj is None else self.sign(function, obj)

    @staticmethod
    def envelope_object(data: bytes) -> dict | None:
        """The decoded envelope object of ``data``, or None for a raw payload."""
        try:
            request, _raw = parse_request(bytes(data))
        except EnvelopeError:
            return None
        return None if request is None else request.fields

    # -- verifying
    def check(self, function: str, payload: bytes, envelope: dict,
              now: float | None = None, fresh: bool = True) -> str | None:
        """None if ``payload`` (whose decoded object is ``envelope``) is signed by an
        accepted key (and, with ``fresh``, within max_age of now); else why not (one of
        the why-codes)."""
        sig, kid, ts = envelope.get("sig"), envelope.get("kid"), envelope.get("ts")
        if not isinstance(sig, str) or not isinstance(kid, str):
            return UNSIGNED
        if kid not in self._keys:
            return UNKNOWN_KEY
        payload = bytes(payload)
        if payload[-1:] != b"}":
            payload = payload.rstrip(b" \t\r\n")
        tail = b',"sig":"' + sig.encode("ascii", "replace") + b'"}'
        if len(sig) != 64 or not payload.endswith(tail):
            return BAD_SIGNATURE
        expected = self._mac(kid, function, payload[:-len(tail)] + b"}")
        if not self._hmac.compare_digest(expected, sig):
            return BAD_SIGNATURE
        if fresh:
            now = time.time() if now is None else now
            if (isinstance(ts, bool) or not isinstance(ts, (int, float))
                    or abs(now - ts) > self.max_age):
                return EXPIRED
        return None

    def claim(self, envelope: dict, now: float | None = None) -> bool:
        """Note a checked envelope's signature as seen; False if it was seen already
        within max_age (a replay: refuse it)."""
        now = time.time() if now is None else now
        sig = envelope["sig"][:32]  # 128 bits tell signatures apart; half the memory
        with self._lock:
            if self._seen.get(sig, 0.0) > now:
                return False
            until = float(envelope["ts"]) + self.max_age
            self._seen[sig] = until
            self._expiry.append((until, sig))
            expiry = self._expiry
            while expiry and expiry[0][0] <= now:  # windows end in about sign order
                ended, old = expiry.popleft()
                if self._seen.get(old) == ended:
                    del self._seen[old]
        return True

    def release(self, envelope: dict) -> None:
        """Forget a claimed signature: its job was left unanswered for gearmand to hand
        out again, and that copy must run."""
        with self._lock:
            self._seen.pop(str(envelope.get("sig"))[:32], None)


def keyring_from_files(config_path: str | None, key_file: str, accept_files=(),
                       max_age: float = DEFAULT_MAX_AGE) -> Keyring:
    """The Keyring of a config's ``security`` section (paths already resolved)."""
    signing = read_key_file(key_file, config_path, "security.key_file")
    accepted = [read_key_file(path, config_path, f"security.accept_key_files[{i}]")
                for i, path in enumerate(accept_files)]
    return Keyring(signing, accepted, max_age)
