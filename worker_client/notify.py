"""systemd's notify protocol (sd_notify(3)), in the few lines of stdlib it takes: a
datagram of ``KEY=VALUE`` lines to the socket named by ``$NOTIFY_SOCKET``."""
import logging
import os
import socket

log = logging.getLogger(__name__)


def sd_notify(*lines: str) -> bool:
    """Send ``lines`` (``READY=1``, ``STOPPING=1``, ``STATUS=...``) to systemd; False when
    not started by systemd with Type=notify (no $NOTIFY_SOCKET) or the send failed."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):  # an abstract socket
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(path)
            sock.sendall("\n".join(lines).encode("utf-8", "replace"))
        return True
    except OSError as err:
        log.warning("could not notify systemd at %s: %s", path, err)
        return False
