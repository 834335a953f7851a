"""When a delayed job runs: durations (``30s``, ``10m``, ``2h``, ``7d``), ISO 8601 times,
and the bounds every sender applies the same way.

A delayed job is a background job sent with SUBMIT_JOB_EPOCH: gearmand keeps it (in its
SQLite queue, through a restart) and hands it out from its time on. gearmand does not wake
a sleeping worker when such a job comes due, so our workers ask again about once a second
while idle (wire.worker.DUE_POLL); a foreign worker gets it at its next wake-up.
"""
from __future__ import annotations

import datetime
import math
import re
import time

#: Longest delay a sender accepts (seconds): a job for next year is almost surely a typo.
MAX_DELAY = 366 * 86400.0
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0,
                 "w": 7 * 86400.0}
DURATION_HELP = "a duration: seconds (90) or a number with s, m, h, d or w (30s, 10m, 2h)"


def parse_duration(value: object) -> float:
    """Seconds from ``90``, ``1.5``, ``30s``, ``10m``, ``2h``, ``7d``; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(DURATION_HELP)
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(value) if isinstance(value, str) else None
        if not match:
            raise ValueError(DURATION_HELP)
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(DURATION_HELP)
    return seconds


def parse_time(text: str) -> float:
    """Epoch seconds of an ISO 8601 time with a zone (``2026-11-26T10:00:00+01:00``,
    ``...Z``); a time without a zone is ambiguous across hosts and refused."""
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except (ValueError, AttributeError) as err:
        raise ValueError("an ISO 8601 time with a zone (2026-11-26T10:00:00+00:00)") from err
    if moment.tzinfo is None:
        raise ValueError("an ISO 8601 time with a zone (add Z or +HH:MM: the hosts of a "
                         "fleet may not share a time zone)")
    return moment.timestamp()


def due_at(at: float | None = None, delay: float | None = None,
           now: float | None = None) -> float | None:
    """The epoch time a job asked to run ``at`` (epoch seconds) or after ``delay``
    seconds should start, or None to run it now (no time, or a time already past).
    ValueError for both at once, a negative delay, or more than MAX_DELAY ahead."""
    if at is not None and delay is not None:
        raise ValueError("give a delay or a time, not both")
    now = time.time() if now is None else now
    if delay is not None:
        if isinstance(delay, bool) or not math.isfinite(delay) or delay < 0:
            raise ValueError(f"a delay must be seconds >= 0, got {delay!r}")
        at = now + delay
    if at is None:
        return None
    if isinstance(at, bool) or not math.isfinite(at):
        raise ValueError(f"a time must be epoch seconds, got {at!r}")
    if at - now > MAX_DELAY:
        raise ValueError(f"{(at - now) / 86400:.0f} days ahead: at most "
                         f"{MAX_DELAY / 86400:.0f} days")
    return at if at > now else None


def epoch_of(at: float) -> int:
    """The whole second gearmand is given: rounded up, so a job never starts early."""
    return math.ceil(at)
