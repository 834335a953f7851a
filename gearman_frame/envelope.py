"""The v1 job envelope: what a sender puts in a job and what a worker sends back.

Request: ``{"v": 1, "id": "<uuid hex>", "args": [...], "kwargs": {...}, "sent_at": t}``
(plus ``"bg": true`` for a background job, so a worker knows to dead-letter it,
``"reply_to": CHANNEL`` for a job whose result is published to ``__results__.CHANNEL``,
``traceparent``/``tracestate`` (W3C trace context) for a traced job, ``wf`` (the
workflow step it is, and what follows it) and ``prev`` (the outcome of the step before)
for a workflow's step, and
``ts``/``kid``/``sig`` when signed: see signing.py);
the ``id`` is also the Gearman unique key, so a resent job is coalesced by gearmand.
Result: ``{"status": "ok"|"failed"|"timeout"|"error"|"refused", "exit_code", "signal",
"stdout", "stderr", "attempts", "duration_s", "worker", "host", "error", "value", "id",
"escaped", "stdout_bytes", "stderr_bytes", "truncated"}`` (``escaped``: pids of processes
that left the command's process group and were killed; ``*_bytes``: a command's whole
output sizes, ``truncated``: what was kept is cut to ``output_limit``).

Both are UTF-8 JSON. Any ``bytes`` value travels as ``{"__b64__": "..."}`` and comes back
as bytes, so every byte string round-trips. Data that is not an envelope is "raw" and is
passed through untouched (interop with other Gearman clients).
"""
from __future__ import annotations

import base64
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from .errors import EnvelopeError

VERSION = 1
_B64 = "__b64__"

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_TIMEOUT = "timeout"
STATUS_ERROR = "error"
#: A job a worker would not run: unsigned, badly signed, expired or replayed.
STATUS_REFUSED = "refused"
#: A job stopped by `runadmin cancel` while it ran: never retried nor dead-lettered.
STATUS_CANCELLED = "cancelled"
STATUSES = (STATUS_OK, STATUS_FAILED, STATUS_TIMEOUT, STATUS_ERROR, STATUS_REFUSED,
            STATUS_CANCELLED)


def _to_json(value: object) -> object:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {_B64: base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _from_json(obj: dict) -> object:
    if len(obj) == 1 and _B64 in obj:
        return base64.b64decode(obj[_B64])
    return obj


_ENCODER = json.JSONEncoder(default=_to_json, ensure_ascii=False, separators=(",", ":"))
#: The C encoder that ``_ENCODER.encode`` builds anew on every call, built once (without
#: its circular-reference bookkeeping: a cycle ends in RecursionError, turned into the
#: ValueError the library raises). None without the C accelerator: dumps() then takes
#: the library's path.
_MAKE_ENCODER = getattr(json.encoder, "c_make_encoder", None)
_C_ENCODE = (_MAKE_ENCODER(None, _to_json, json.encoder.encode_basestring,
                           None, ":", ",", False, False, True)
             if _MAKE_ENCODER else None)
_DECODER = json.JSONDecoder(object_hook=_from_json)
#: For text that cannot hold a ``__b64__`` key: no Python call per object.
_PLAIN_DECODER = json.JSONDecoder()


def dumps(value: object) -> bytes:
    """Encode any JSON-able value (bytes allowed anywhere) to UTF-8 JSON bytes."""
    if _C_ENCODE is not None:
        try:
            return "".join(_C_ENCODE(value, 0)).encode("utf-8")
        except RecursionError as err:
            raise ValueError("value is circular or nested too deeply") from err
    return _ENCODER.encode(value).encode("utf-8")


def loads(data: bytes | str) -> object:
    """Decode :func:`dumps` output; raise EnvelopeError on anything else."""
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
        # the key can only be there literally or behind a \u escape
        hooked = _B64 in text or "\\u" in text
        return (_DECODER if hooked else _PLAIN_DECODER).decode(text)
    except (ValueError, UnicodeDecodeError) as err:
        raise EnvelopeError(f"not valid UTF-8 JSON: {err}") from err
    except RecursionError as err:  # hostile nesting: an error for this job, not the worker
        raise EnvelopeError("JSON nested too deeply") from err


_SCALARS = (str, int, bool, type(None), bytes, bytearray)


def check_faithful(value: object, where: str = "kwargs") -> None:
    """Raise ValueError if JSON would carry ``value`` back as something else: a set, a
    key that is not a string, a NaN or infinity (bytes are fine: they travel as base64)."""
    kind = type(value)
    if kind in _SCALARS:
        return
    if kind is float:
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{where}: {value} is not a finite number (JSON has none)")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: key {key!r} is not a string (JSON would turn it "
                                 "into one)")
            check_faithful(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_faithful(item, f"{where}[{index}]")
    elif isinstance(value, (set, frozenset)):
        raise ValueError(f"{where}: a {kind.__name__} would arrive as a list; send a list")
    elif not isinstance(value, (int, float, str, bytes)):
        raise ValueError(f"{where}: a {kind.__name__} is not JSON")


def new_job_id() -> str:
    """A fresh job id: 32 hex characters, safely under gearmand's 63-byte unique limit."""
    return os.urandom(16).hex()


@dataclass(frozen=True)
class Request:
    """What a sender asks a worker to do."""

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    id: str = field(default_factory=new_job_id)
    sent_at: float = field(default_factory=time.time)
    background: bool = False
    #: The decoded envelope object it came from (what a signature covers), if any.
    fields: dict | None = field(default=None, compare=False, repr=False)
    #: The result channel: the worker publishes the result to ``__results__.CHANNEL``.
    reply_to: str | None = None
    #: The sender follows the output: the worker streams it (WORK_WARNING) while it runs.
    follow: bool = False
    #: A delayed job's start time (epoch seconds); a signature is dated from it.
    at: float | None = None
    #: The sender's trace context (W3C ``traceparent`` and ``tracestate``), signed with
    #: the rest: the worker's spans and the command continue the sender's trace.
    traceparent: str | None = None
    tracestate: str | None = None
    #: A workflow's step: its place and what follows it (see gearman_frame.workflows).
    wf: dict | None = None
    #: The outcome of the step before (a workflow's step after the first); ``has_prev``
    #: tells a None outcome from none at all.
    prev: Any = None
    has_prev: bool = False

    def encode(self, signer: Any = None, function: str | None = None) -> bytes:
        """The envelope's JSON; signed for ``function`` when a Keyring ``signer`` is given."""
        obj = {"v": VERSION, "id": self.id, "args": list(self.args), "kwargs": self.kwargs,
               "sent_at": self.sent_at}
        if self.background:
            obj["bg"] = True
        if self.reply_to:
            obj["reply_to"] = self.reply_to
        if self.follow:
            obj["follow"] = True
        if self.at is not None:
            obj["at"] = self.at
        if self.traceparent:
            obj["traceparent"] = self.traceparent
            if self.tracestate:
                obj["tracestate"] = self.tracestate
        if self.wf is not None:
            obj["wf"] = self.wf
            if self.has_prev:
                obj["prev"] = self.prev
        if signer is not None:
            return signer.sign(function, obj)
        return dumps(obj)

    @classmethod
    def decode(cls, data: bytes | str) -> Request:
        """Decode an envelope; raise EnvelopeError if ``data`` is not one."""
        obj = loads(data)
        if not isinstance(obj, dict) or not _is_envelope_object(obj):
            raise EnvelopeError("not a v1 job envelope (needs 'v': 1 and an 'id')")
        return cls.from_object(obj)

    @classmethod
    def from_object(cls, obj: dict) -> Request:
        """The Request of a decoded envelope object; EnvelopeError if its args or kwargs
        are not a list and an object (an empty ``[]`` counts as no kwargs: PHP's
        ``json_encode([])`` writes that)."""
        args, kwargs = obj.get("args", []), obj.get("kwargs", {})
        if kwargs == []:
            kwargs = {}
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise EnvelopeError("'args' must be a list and 'kwargs' an object")
        _check_id(obj["id"])
        reply_to = obj.get("reply_to")
        wf = obj.get("wf")
        return cls(args=tuple(args), kwargs=kwargs, id=obj["id"],
                   sent_at=obj.get("sent_at") or 0.0, background=obj.get("bg") is True,
                   fields=obj, reply_to=reply_to if isinstance(reply_to, str) else None,
                   follow=obj.get("follow") is True, at=_number_or_none(obj.get("at")),
                   traceparent=_text_or_none(obj.get("traceparent")),
                   tracestate=_text_or_none(obj.get("tracestate")),
                   wf=wf if isinstance(wf, dict) else None, prev=obj.get("prev"),
                   has_prev=isinstance(wf, dict) and "prev" in obj)


def _check_id(job_id: str) -> None:
    """A job id becomes a unique key, a log field and a command's environment: text
    without NUL or control characters, that UTF-8 can carry, of at most 63 bytes."""
    try:
        size = len(job_id.encode("utf-8"))
    except UnicodeEncodeError:
        raise EnvelopeError("the job id is not text UTF-8 can carry (a lone surrogate)") \
            from None
    if size > 63 or any(ord(c) < 32 or c == "\x7f" for c in job_id):
        raise EnvelopeError("the job id must be at most 63 bytes of text without control "
                            "characters or NUL")


def _text_or_none(value: object) -> str | None:
    """A trace header: text of at most 512 characters (W3C's limit for tracestate), else
    ignored (a job is never refused for its trace context)."""
    return value if isinstance(value, str) and 0 < len(value) <= 512 else None


def _number_or_none(value: object) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


_OBJECT_START = re.compile(rb"[ \t\r\n]*\{")


def looks_like_object(data: bytes) -> bool:
    """Cheap test: does ``data`` start like a JSON object (the only thing that can be an
    envelope)?"""
    return _OBJECT_START.match(data) is not None


def _is_envelope_object(obj: dict) -> bool:
    version = obj.get("v")
    return type(version) is int and version == VERSION and isinstance(obj.get("id"), str)


def parse_request(data: bytes) -> tuple[Request | None, bytes | None]:
    """Return ``(Request, None)`` for an envelope or ``(None, data)`` for a raw payload.

    An envelope is JSON whose top level is an object with ``"v": 1`` and a string
    ``"id"``, in any key order and spacing (parsed, not guessed); anything else is raw
    and passed on untouched. An envelope whose args or kwargs have the wrong type raises
    EnvelopeError.
    """
    if not looks_like_object(data):
        return None, data
    try:
        obj = loads(data)
    except EnvelopeError:
        return None, data
    if not isinstance(obj, dict) or not _is_envelope_object(obj):
        return None, data
    return Request.from_object(obj), None


def why_raw(data: bytes) -> str:
    """Why ``data`` is not an envelope, in a few words (for a refusal)."""
    if not looks_like_object(data):
        return "it is not a JSON object"
    try:
        loads(data)
    except EnvelopeError as err:
        return str(err)
    return "its JSON object lacks \"v\": 1 and a string \"id\""


@dataclass
class Result:
    """What a worker reports back; a final failure carries the same details as success."""

    status: str = STATUS_OK
    exit_code: int | None = None
    signal: int | None = None
    stdout: object = ""
    stderr: object = ""
    attempts: int = 1
    duration_s: float = 0.0
    worker: str = ""
    host: str = ""
    error: str | None = None
    value: object = None
    id: str | None = None
    escaped: object = None
    #: A command's whole output sizes, and True when what is kept was cut to output_limit.
    stdout_bytes: int | None = None
    stderr_bytes: int | None = None
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    def to_dict(self) -> dict:
        return dict(self.__dict__)  # the fields, in order (__init__ sets them in order)

    def encode(self) -> bytes:
        return dumps(self.to_dict())

    @classmethod
    def decode(cls, data: bytes) -> "Result":
        obj = loads(data)
        if not isinstance(obj, dict) or obj.get("status") not in STATUSES:
            raise EnvelopeError("not a result object (needs a known 'status')")
        try:
            return cls(**obj)
        except TypeError:  # fields this version does not know (a newer worker) are left out
            return cls(**{k: v for k, v in obj.items() if k in _RESULT_FIELDS})


_RESULT_FIELDS = tuple(Result.__dataclass_fields__)
