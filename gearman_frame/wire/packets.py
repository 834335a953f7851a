"""Gearman's binary packets, byte for byte: packing requests, parsing responses.

python3-gearman's protocol module gives the command numbers and each command's fields;
lengths here are counted in bytes (the library counts characters and truncates
'héllo'), and every field but the data is decoded as UTF-8 with surrogateescape, so
nothing a server sends can raise UnicodeDecodeError.
"""
from __future__ import annotations

import socket
import struct
import sys
from typing import Sequence

from python3_gearman import protocol as _gp

from ..errors import ConnectionLost

CAN_DO = _gp.GEARMAN_COMMAND_CAN_DO
RESET_ABILITIES = _gp.GEARMAN_COMMAND_RESET_ABILITIES
PRE_SLEEP = _gp.GEARMAN_COMMAND_PRE_SLEEP
NOOP = _gp.GEARMAN_COMMAND_NOOP
SUBMIT_JOB = _gp.GEARMAN_COMMAND_SUBMIT_JOB
JOB_CREATED = _gp.GEARMAN_COMMAND_JOB_CREATED
GRAB_JOB = _gp.GEARMAN_COMMAND_GRAB_JOB
NO_JOB = _gp.GEARMAN_COMMAND_NO_JOB
JOB_ASSIGN = _gp.GEARMAN_COMMAND_JOB_ASSIGN
WORK_STATUS = _gp.GEARMAN_COMMAND_WORK_STATUS
WORK_COMPLETE = _gp.GEARMAN_COMMAND_WORK_COMPLETE
WORK_FAIL = _gp.GEARMAN_COMMAND_WORK_FAIL
ECHO_REQ = _gp.GEARMAN_COMMAND_ECHO_REQ
ECHO_RES = _gp.GEARMAN_COMMAND_ECHO_RES
SUBMIT_JOB_BG = _gp.GEARMAN_COMMAND_SUBMIT_JOB_BG
ERROR = _gp.GEARMAN_COMMAND_ERROR
STATUS_RES = _gp.GEARMAN_COMMAND_STATUS_RES
SUBMIT_JOB_HIGH = _gp.GEARMAN_COMMAND_SUBMIT_JOB_HIGH
SET_CLIENT_ID = _gp.GEARMAN_COMMAND_SET_CLIENT_ID
WORK_EXCEPTION = _gp.GEARMAN_COMMAND_WORK_EXCEPTION
OPTION_REQ = _gp.GEARMAN_COMMAND_OPTION_REQ
OPTION_RES = _gp.GEARMAN_COMMAND_OPTION_RES
WORK_DATA = _gp.GEARMAN_COMMAND_WORK_DATA
WORK_WARNING = _gp.GEARMAN_COMMAND_WORK_WARNING
GRAB_JOB_UNIQ = _gp.GEARMAN_COMMAND_GRAB_JOB_UNIQ
JOB_ASSIGN_UNIQ = _gp.GEARMAN_COMMAND_JOB_ASSIGN_UNIQ
SUBMIT_JOB_HIGH_BG = _gp.GEARMAN_COMMAND_SUBMIT_JOB_HIGH_BG
SUBMIT_JOB_LOW = _gp.GEARMAN_COMMAND_SUBMIT_JOB_LOW
SUBMIT_JOB_LOW_BG = _gp.GEARMAN_COMMAND_SUBMIT_JOB_LOW_BG
#: A background job gearmand holds until an epoch time (gearmand 1.1.x; not in the
#: library's table): task, unique, epoch, data.
SUBMIT_JOB_EPOCH = 36
#: Does a server hold a job with this unique (queued or running)? Not in the library's
#: table either: unique -> unique, known, running, numerator, denominator, waiting.
GET_STATUS_UNIQUE, STATUS_RES_UNIQUE = 41, 42
#: Whether a job's sender waits (foreground) or not, by priority: the submit command.
SUBMIT_COMMANDS = {
    (False, "high"): SUBMIT_JOB_HIGH, (False, "normal"): SUBMIT_JOB,
    (False, "low"): SUBMIT_JOB_LOW, (True, "high"): SUBMIT_JOB_HIGH_BG,
    (True, "normal"): SUBMIT_JOB_BG, (True, "low"): SUBMIT_JOB_LOW_BG,
}

HEADER = struct.Struct("!4sII")
MAGIC_REQ = b"\0REQ"
MAGIC_RES = b"\0RES"
#: Each response command's fields; the last one named "data" is kept as bytes.
_FIELDS = {cmd: tuple(names) for cmd, names in _gp.GEARMAN_PARAMS_FOR_COMMAND.items()
           if cmd != _gp.GEARMAN_COMMAND_TEXT_COMMAND}
JOB_ASSIGNS = (JOB_ASSIGN, JOB_ASSIGN_UNIQ)
#: Bytes kept of an oversized job packet: its handle, function (up to 8191 bytes) and
#: unique come first.
OVERSIZED_PREFIX = 16384
#: An empty buffer that grew past this (bytes allocated) is replaced, so the room one
#: big packet took is given back.
SHRINK_ABOVE = 1024 * 1024


def command_name(cmd: int) -> str:
    """``JOB_ASSIGN_UNIQ`` for 31: for messages."""
    return _gp.get_command_name(cmd).replace("GEARMAN_COMMAND_", "")


def as_bytes(value: object) -> bytes:
    """A field as bytes: text goes as UTF-8 (lone surrogates kept as the bytes they stand
    for), numbers as their decimal text."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return str(value).encode("utf-8", "surrogateescape")


def packet(cmd: int, fields: Sequence[bytes] = ()) -> bytes:
    """A request packet: the header, then the fields (bytes) joined by NUL."""
    payload = b"\0".join(fields)
    return HEADER.pack(MAGIC_REQ, cmd, len(payload)) + payload


def request(cmd: int, *fields: object) -> bytes:
    """A request packet of ``fields`` given as bytes, text or numbers."""
    return packet(cmd, [as_bytes(f) for f in fields])


def read_exactly(sock: socket.socket, size: int) -> bytes:
    """``size`` bytes from a blocking socket; ConnectionResetError if it closes first."""
    chunks, left = [], size
    while left:
        chunk = sock.recv(left)
        if not chunk:
            raise ConnectionResetError("connection closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_packet(sock: socket.socket) -> tuple[bytes, int, bytes]:
    """One whole packet from a blocking socket: ``(magic, command, body)``."""
    magic, cmd, size = HEADER.unpack(read_exactly(sock, HEADER.size))
    return magic, cmd, read_exactly(sock, size)


class Oversized(bytes):
    """The data of a job whose packet was over the connection's ``max_packet``: empty (the
    bytes were read past and dropped as they arrived); ``size`` says how large it was."""

    size = 0

    @classmethod
    def of(cls, size: int) -> "Oversized":
        data = cls()
        data.size = size
        return data


def _fields(cmd: int, payload: bytes) -> tuple:
    """The fields of a response: text as str, a trailing data field as bytes."""
    names = _FIELDS.get(cmd)
    if names is None:
        raise ConnectionLost(f"protocol error: unknown command {cmd}")
    if not names:
        return ()
    binary = names[-1] == "data"
    if not binary:  # gearmand ends some (WORK_FAIL) with a NUL
        payload = payload.rstrip(b"\0")
    parts = payload.split(b"\0", len(names) - 1)
    if len(parts) != len(names):
        raise ConnectionLost(f"protocol error: {command_name(cmd)} has {len(parts)} of "
                             f"{len(names)} arguments")
    text = [p.decode("utf-8", "surrogateescape") for p in (parts[:-1] if binary else parts)]
    return (*text, parts[-1]) if binary else tuple(text)


class Parser:
    """Turns the bytes a server sent into ``(command, fields)``, in order.

    ``max_packet`` (None: no limit) bounds what one packet may make it hold: a job packet
    over it is read past and dropped as it arrives, keeping only its first few KiB, and
    handed on as a job whose data is :class:`Oversized`; any other packet over it is a
    protocol error."""

    def __init__(self, max_packet: int | None = None) -> None:
        self.max_packet = max_packet
        self.buffer = bytearray()
        self._skipping: list | None = None  # [command, bytes left, kept prefix, size]

    def feed(self, out: list) -> None:
        """Append every whole packet in the buffer to ``out``; ConnectionLost on bytes
        that are not the protocol."""
        buf = self.buffer
        if self._skipping is not None and not self._skip(buf, out):
            return
        offset, size = 0, len(buf)
        while size - offset >= HEADER.size:
            magic, cmd, length = HEADER.unpack_from(buf, offset)
            if magic != MAGIC_RES:
                raise ConnectionLost(f"protocol error: bad magic {magic!r}")
            if self.max_packet is not None and length > self.max_packet:
                if cmd not in JOB_ASSIGNS:
                    raise ConnectionLost(f"protocol error: a {length}-byte packet "
                                         f"(over {self.max_packet})")
                del buf[:offset + HEADER.size]
                self._skipping = [cmd, length, bytearray(), length]
                return self.feed(out)
            end = offset + HEADER.size + length
            if end > size:
                break
            with memoryview(buf) as view:
                payload = view[offset + HEADER.size:end].tobytes()
            out.append((cmd, _fields(cmd, payload)))
            offset = end
        if offset:
            del buf[:offset]
            if not buf and sys.getsizeof(buf) > SHRINK_ABOVE:  # let a big job's room go
                self.buffer = bytearray()

    def _skip(self, buf: bytearray, out: list) -> bool:
        """Consume an oversized packet's bytes from ``buf``; True once it is whole (it is
        then a job with Oversized data in ``out``)."""
        state = self._skipping
        assert state is not None
        taken = min(state[1], len(buf))
        room = OVERSIZED_PREFIX - len(state[2])
        if room > 0:
            state[2] += buf[:min(room, taken)]
        del buf[:taken]
        state[1] -= taken
        if state[1]:
            return False
        self._skipping = None
        cmd, _left, prefix, size = state
        count = len(_FIELDS[cmd]) - 1
        parts = bytes(prefix).split(b"\0", count)[:count]
        if len(parts) != count:
            raise ConnectionLost("protocol error: an oversized job without a handle")
        out.append((cmd, (*(p.decode("utf-8", "surrogateescape") for p in parts),
                          Oversized.of(size))))
        return True
