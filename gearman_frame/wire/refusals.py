"""What a server refused with an ERROR because it lacks that part of the protocol.

The Perl job server (Debian ``gearman-server``) has no GRAB_JOB_UNIQ, WORK_DATA,
WORK_WARNING, SUBMIT_JOB_LOW, SUBMIT_JOB_HIGH_BG, SUBMIT_JOB_LOW_BG or
GET_STATUS_UNIQUE; it answers each with ``ERROR server_error`` and a Perl message
naming the missing method (``CMD_work_data``, or a bare ``CMD_`` for a packet type it
does not know at all). Senders and workers fall back per server and say so once.
"""
import logging
import re
import threading

log = logging.getLogger(__name__)

_MISSING_METHOD = re.compile(r'object method "CMD_(\w*)"')


def refused_command(error_text: str | bytes | None) -> str | None:
    """The command a server's ERROR says it lacks ('' for one it does not know at all),
    or None when the ERROR is about something else (a full queue, a bad argument)."""
    if isinstance(error_text, (bytes, bytearray)):
        error_text = bytes(error_text).decode("utf-8", "replace")
    match = _MISSING_METHOD.search(error_text or "")
    return match.group(1) if match else None


class Refusals:
    """Per server address, the protocol parts it refused; each noted (and logged) once."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def has(self, address: object, part: str) -> bool:
        # asked per grab: free while no server refused anything (the C gearmand never does)
        return bool(self._seen) and (str(address), part) in self._seen

    def note(self, address: object, part: str, fallback: str) -> None:
        key = (str(address), part)
        with self._lock:
            if key in self._seen:
                return
            self._seen.add(key)
        log.warning("gearmand %s does not support %s: %s", address, part, fallback)
