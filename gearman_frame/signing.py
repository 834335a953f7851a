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
from typing import Any, Iterable

from .defaults import DEFAULT_MAX_AGE
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
#: SHA-256's block size: HMAC pads (or first hashes) the key to it.
_BLOCK = 64
#: Length of the signature member that ends a signed envelope: ``,"sig":"<64 hex>"}``.
_SIG_MEMBER = len(',"sig":""}') + 64


def _crypto() -> tuple[Any, Any]:
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
    def refuse(expected: str, got: str) -> ConfigError:
        return ConfigError(config_path, key, expected, got=f"{path}: {got}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        raise refuse("a readable key file", err.strerror or str(err)) from err
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


def _pads(hashlib: Any, secret: bytes) -> tuple:
    """HMAC's two starting states for ``secret`` (RFC 2104): SHA-256 fed the key, padded
    to the 64-byte block (hashed first if longer), XOR 0x36 (inner) and XOR 0x5c (outer)."""
    if len(secret) > _BLOCK:
        secret = hashlib.sha256(secret).digest()
    secret = secret.ljust(_BLOCK, b"\0")
    return (hashlib.sha256(bytes(b ^ 0x36 for b in secret)),
            hashlib.sha256(bytes(b ^ 0x5c for b in secret)))


class Keyring:
    """The fleet's keys: one signs, every one (old keys during a rotation) verifies; and
    the signatures run while they could still pass the time check, to refuse a replay."""

    def __init__(self, signing_key: bytes, accepted: Iterable[bytes] = (),
                 max_age: float = DEFAULT_MAX_AGE) -> None:
        self.kid = key_id(signing_key)
        self.max_age = float(max_age)
        #: Signatures claimed, by slot (``ts // max_age``): see :meth:`claim`.
        self._seen: dict[int, set[str]] = {}
        self._lock = threading.Lock()
        hashlib, self._hmac = _crypto()
        #: Per key, SHA-256 states already fed the padded key (HMAC's inner and outer).
        self._pads = {key_id(k): _pads(hashlib, k) for k in (signing_key, *accepted)}
        #: Per (key, function), the inner state fed ``FUNCTION NUL`` too (a fleet has few).
        self._prefixed: dict[tuple[str, str], tuple] = {}

    def _mac(self, kid: str, function: str, body: bytes) -> str:
        """HMAC-SHA256 (RFC 2104) of ``FUNCTION NUL BODY`` under key ``kid``, as hex.
        Computed on hashlib states kept keyed: copying two SHA-256 states costs a third
        of what copying OpenSSL 3's HMAC context does (0.9 against 3.0 µs a job, measured);
        the tests check it against stdlib ``hmac.new``."""
        pair = self._prefixed.get((kid, function))
        if pair is None:
            inner, outer = self._pads[kid]
            inner = inner.copy()
            inner.update(function.encode("utf-8", "surrogateescape") + b"\0")
            pair = (inner, outer)
            if len(self._prefixed) < _PREFIXED_MAX:
                self._prefixed[(kid, function)] = pair
        inner, outer = pair[0].copy(), pair[1].copy()
        inner.update(body)
        outer.update(inner.digest())
        return outer.hexdigest()

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
        sig, kid = envelope.get("sig"), envelope.get("kid")
        if not isinstance(sig, str) or not isinstance(kid, str):
            return UNSIGNED
        if kid not in self._pads:
            return UNKNOWN_KEY
        payload = bytes(payload)
        if payload[-1:] != b"}":
            payload = payload.rstrip(b" \t\r\n")
        cut = len(payload) - _SIG_MEMBER
        if (len(sig) != 64
                or payload[cut:] != b',"sig":"' + sig.encode("ascii", "replace") + b'"}'):
            return BAD_SIGNATURE
        if not self._hmac.compare_digest(self._mac(kid, function, payload[:cut] + b"}"), sig):
            return BAD_SIGNATURE
        if fresh:
            ts = envelope.get("ts")
            if (isinstance(ts, bool) or not isinstance(ts, (int, float))
                    or abs((time.time() if now is None else now) - ts) > self.max_age):
                return EXPIRED
        return None

    def admit(self, function: str, payload: bytes, envelope: dict) -> str | None:
        """:meth:`check` then :meth:`claim`, as a worker does for each job before it
        runs: None if the job may run, else why not (``REPLAYED`` for a replay)."""
        why = self.check(function, payload, envelope)
        if why is None and not self.claim(envelope):
            return REPLAYED
        return why

    def claim(self, envelope: dict, now: float | None = None) -> bool:
        """Note a checked envelope's signature as seen; False if it was seen already (a
        replay: refuse it). Signatures are kept by their ``ts``, in slots of max_age
        seconds; a slot is dropped once no ts in it can pass ``check`` (2 x max_age after
        the slot began, so a signature is remembered as long as it can be accepted)."""
        sig = envelope["sig"][:32]  # 128 bits tell signatures apart; half the memory
        slot = int(envelope["ts"] // self.max_age)
        with self._lock:
            seen = self._seen.get(slot)
            if seen is None:
                seen = self._seen[slot] = set()
                self._drop_slots(time.time() if now is None else now)
            elif sig in seen:
                return False
            seen.add(sig)
        return True

    def _drop_slots(self, now: float) -> None:
        """Forget the slots whose every ts is more than max_age before ``now``."""
        ended = [slot for slot in self._seen if (slot + 2) * self.max_age < now]
        for slot in ended:
            del self._seen[slot]

    def release(self, envelope: dict) -> None:
        """Forget a claimed signature: its job was left unanswered for gearmand to hand
        out again, and that copy must run."""
        ts = envelope.get("ts")
        if isinstance(ts, bool) or not isinstance(ts, (int, float)):
            return  # never claimed: check() refuses a job without a time
        with self._lock:
            seen = self._seen.get(int(ts // self.max_age))
            if seen is not None:
                seen.discard(str(envelope.get("sig"))[:32])


def keyring_from_files(config_path: str | None, key_file: str, accept_files: Iterable[str] = (),
                       max_age: float = DEFAULT_MAX_AGE) -> Keyring:
    """The Keyring of a config's ``security`` section (paths already resolved)."""
    signing = read_key_file(key_file, config_path, "security.key_file")
    accepted = [read_key_file(path, config_path, f"security.accept_key_files[{i}]")
                for i, path in enumerate(accept_files)]
    return Keyring(signing, accepted, max_age)
