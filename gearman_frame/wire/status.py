"""GET_STATUS_UNIQUE: does a server hold a job with this unique key (queued or running)?

python3-gearman has no such request, so this is a few lines of the binary protocol on a
short-lived connection: every request is written at once and the answers (one
STATUS_RES_UNIQUE each, in order) read back. gearmand 1.1.20 answers ``unique, known,
running, numerator, denominator, waiting clients``.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Iterable

from ..addresses import ServerAddress
from ..errors import ConnectionLost, ProtocolError
from .connection import CONNECT_TIMEOUT, open_socket
from .packets import GET_STATUS_UNIQUE, MAGIC_RES, STATUS_RES_UNIQUE, read_packet, request



@dataclass(frozen=True)
class UniqueStatus:
    """What a server says of one unique key."""

    unique: str
    known: bool
    running: bool
    #: The progress its worker last reported (WORK_STATUS), 0/0 if none.
    numerator: int = 0
    denominator: int = 0


def status_by_unique(address: ServerAddress, uniques: Iterable[str], timeout: float = 5.0) -> dict[str, UniqueStatus]:
    """Ask the server at ``address`` (a ServerAddress) about each unique key.

    Raises ServerUnavailable if it cannot be reached, ConnectionLost if it stops
    answering, ProtocolError if it answers something else (a server without the request).
    """
    uniques = list(uniques)
    if not uniques:
        return {}
    sock = open_socket(address, CONNECT_TIMEOUT)
    with sock:
        sock.settimeout(timeout)
        try:
            sock.sendall(b"".join(request(GET_STATUS_UNIQUE, u) for u in uniques))
            return {answer.unique: answer for answer in
                    (_read_answer(sock) for _ in uniques)}
        except OSError as err:
            raise ConnectionLost(f"{address}: no status answer: {err}") from err


def _read_answer(sock: socket.socket) -> UniqueStatus:
    magic, kind, body = read_packet(sock)
    if magic != MAGIC_RES or kind != STATUS_RES_UNIQUE:
        what = body.replace(b"\0", b" ").decode("utf-8", "replace")[:200]
        raise ProtocolError(f"expected STATUS_RES_UNIQUE, got packet {kind}: {what}")
    fields = body.split(b"\0")
    if len(fields) < 3:
        raise ProtocolError(f"STATUS_RES_UNIQUE with {len(fields)} fields")
    progress = [int(f) if f.isdigit() else 0 for f in fields[3:5]] + [0, 0]
    return UniqueStatus(fields[0].decode("utf-8", "surrogateescape"), fields[1] == b"1",
                        fields[2] == b"1", progress[0], progress[1])
