"""How many workers can take a function, asked of each gearmand's admin ``status`` (a
line per function: name, jobs, running, workers, tab-separated; ``.`` ends it): so a
sender can say at once that its job waits for a worker nobody runs."""
from __future__ import annotations

from typing import Iterable

from ..addresses import ServerAddress
from ..errors import ServerUnavailable
from .connection import open_socket

#: The longest reply read (a server with very many functions is not worth more).
MAX_REPLY = 4 * 1024 * 1024


def workers_for(addresses: Iterable[ServerAddress], function: str,
                timeout: float = 1.0) -> int | None:
    """Worker connections that can take ``function`` on the servers that answered; None
    when none answered."""
    total, answered = 0, False
    name = function.encode("utf-8", "surrogateescape")
    for address in addresses:
        try:
            sock = open_socket(address, timeout)
        except ServerUnavailable:
            continue
        try:
            sock.settimeout(timeout)
            sock.sendall(b"status\n")
            reply = b""
            while not (reply.endswith(b"\n.\n") or reply == b".\n") and len(reply) < MAX_REPLY:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
        except OSError:
            continue
        finally:
            sock.close()
        answered = True
        for line in reply.split(b"\n"):
            fields = line.rstrip(b"\r").split(b"\t")
            if len(fields) == 4 and fields[0] == name and fields[3].isdigit():
                total += int(fields[3])
    return total if answered else None
