"""How many workers can take a function, asked of each gearmand's admin ``status`` (the
admin's own framing and parsing, ``admin_protocol``): so a sender can say at once that
its job waits for a worker nobody runs."""
from __future__ import annotations

from typing import Iterable

from ..addresses import ServerAddress
from ..errors import FrameError
from . import admin_protocol as proto
from .connection import open_socket


def workers_for(addresses: Iterable[ServerAddress], function: str,
                timeout: float = 1.0) -> int | None:
    """Worker connections that can take ``function`` on the servers that answered; None
    when none answered."""
    total, answered = 0, False
    for address in addresses:
        try:
            lines = _status(address, timeout)
        except (OSError, FrameError):  # down, or an answer we cannot read: not counted
            continue
        answered = True
        total += sum(row.workers for row in proto.parse_status(lines, str(address), [])
                     if row.function == function)
    return total if answered else None


def _status(address: ServerAddress, timeout: float) -> list[str]:
    with open_socket(address, timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(b"status\r\n")
        reply = proto.ReplyBuffer()
        while (lines := reply.take_block()) is None:
            chunk = sock.recv(65536)
            if not chunk:
                raise OSError("connection closed mid-reply")
            reply.feed(chunk)
        return lines
