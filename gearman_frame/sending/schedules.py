"""Periodic schedules: the ``schedules:`` section, when each one fires, and the small
state file a scheduler host keeps.

Occurrences are fixed points in time that every scheduler computes alike: ``every: N``
fires at the multiples of N seconds since the epoch, ``cron:`` at croniter's times in the
schedule's zone. An occurrence's job id is ``sched:NAME:EPOCH``, the same on every host,
so gearmand merges two copies of it while it is queued (see send_job_client.scheduler for
how two schedulers share the work).

Cron expressions are croniter's (a well-kept library: five fields, ranges, steps, names,
``@daily``), imported only when a config has a cron schedule.
"""
from __future__ import annotations

import datetime
import fcntl
import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..delays import DURATION_HELP, parse_duration
from ..files import private_folder, write_private_file

if TYPE_CHECKING:
    from ..config.rules import Rules

#: The control function whose single job is the lease: the scheduler holding it fires.
LEASE_PREFIX = "__sched__."
CATCH_UP = ("latest", "all", "none")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,40}")
#: Shortest ``every``: a schedule is not a busy loop.
MIN_EVERY = 1.0


@dataclass(frozen=True)
class Schedule:
    """One entry of ``schedules:``."""

    name: str
    function: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    cron: str | None = None
    every: float | None = None
    timezone: str = "UTC"
    #: After no scheduler ran for a while: run the occurrences missed (all), only the
    #: last of them (latest) or none.
    catch_up: str = "latest"

    @property
    def spec(self) -> str:
        return f"cron {self.cron} ({self.timezone})" if self.cron else f"every {self.every:g}s"

    def after(self, moment: float) -> float:
        """The first occurrence strictly after ``moment`` (epoch seconds)."""
        if self.every:
            return (math.floor(moment / self.every) + 1) * self.every
        return self._croniter(moment).get_next(float)

    def at_or_before(self, moment: float) -> float:
        """The last occurrence at or before ``moment``."""
        if self.every:
            return math.floor(moment / self.every) * self.every
        return self._croniter(moment + 0.001).get_prev(float)

    def between(self, start: float, end: float, limit: int = 10_000) -> list[float]:
        """Occurrences in ``(start, end]``, oldest first (at most ``limit``: the newest)."""
        found: list[float] = []
        moment = start
        while True:
            moment = self.after(moment)
            if moment > end:
                return found[-limit:]
            found.append(moment)
            if len(found) > 2 * limit:
                del found[:limit]

    def job_id(self, occurrence: float) -> str:
        return occurrence_id(self.name, occurrence)

    def _croniter(self, moment: float) -> Any:
        from croniter import croniter  # 28 ms of imports: only for cron schedules
        base = datetime.datetime.fromtimestamp(moment, ZoneInfo(self.timezone))
        return croniter(self.cron, base)


def occurrence_id(name: str, occurrence: float) -> str:
    """The job id (and unique) of one occurrence: ``sched:NAME:EPOCH`` (<= 57 bytes)."""
    return f"sched:{name}:{int(occurrence)}"


def lease_function(group: str) -> str:
    return f"{LEASE_PREFIX}{group}"


def lease_unique(group: str) -> str:
    """The lease job's unique: GET_STATUS_UNIQUE finds a job by its unique alone."""
    return f"sched-lease:{group}"


def check_schedules(validator: Rules, raw: object) -> tuple:
    """The ``schedules`` section as Schedules; the validator's ConfigError naming the key
    (``schedules.NAME.cron``) at the first problem."""
    if not isinstance(raw, dict):
        raise validator.error("schedules", "a mapping of schedule names", raw)
    schedules = []
    for name, entry in raw.items():
        key = f"schedules.{name}"
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise validator.error(key, "a name of 1 to 40 letters, digits, '_', '.', '-'",
                                  name)
        entry = validator.mapping(entry, key, ("function", "args", "kwargs", "cron", "every",
                                               "timezone", "catch_up"))
        function = validator.string(entry.get("function"), f"{key}.function")
        args, kwargs = entry.get("args", []), entry.get("kwargs", {})
        if not isinstance(args, list):
            raise validator.error(f"{key}.args", "a list", args)
        if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            raise validator.error(f"{key}.kwargs", "a mapping of names to values", kwargs)
        cron, every = entry.get("cron"), entry.get("every")
        if (cron is None) == (every is None):
            raise validator.error(key, "either 'cron' or 'every'",
                                  got="both" if cron is not None else "neither")
        timezone = validator.string(entry.get("timezone", "UTC"), f"{key}.timezone")
        _check_zone(validator, timezone, f"{key}.timezone")
        if cron is not None:
            _check_cron(validator, cron, f"{key}.cron")
        else:
            every = _check_every(validator, every, f"{key}.every")
        schedules.append(Schedule(
            name=name, function=function, args=tuple(args), kwargs=dict(kwargs), cron=cron,
            every=every, timezone=timezone,
            catch_up=validator.string(entry.get("catch_up", "latest"), f"{key}.catch_up",
                                      CATCH_UP)))
    return tuple(schedules)


def _check_cron(validator: Rules, cron: object, key: str) -> None:
    if isinstance(cron, str) and cron.strip() and not validator.cron:
        return  # a worker: it fires no schedule, and croniter would cost it 4 MiB
    from croniter import croniter  # 28 ms of imports: only for cron schedules
    if not isinstance(cron, str) or not croniter.is_valid(cron):
        raise validator.error(key, "a cron expression (5 fields: minute hour day month "
                                   "weekday, e.g. '*/5 * * * *')", cron)


def _check_every(validator: Rules, every: object, key: str) -> float:
    try:
        seconds = parse_duration(every)
    except ValueError:
        seconds = 0.0
    if seconds < MIN_EVERY:
        raise validator.error(key, f"{DURATION_HELP}, at least {MIN_EVERY:g}s", every)
    return seconds


def _check_zone(validator: Rules, zone: object, key: str) -> None:
    try:
        ZoneInfo(str(zone))
    except (ZoneInfoNotFoundError, ValueError):
        raise validator.error(key, "an IANA time zone (UTC, Europe/Berlin)", zone) from None


class ScheduleState:
    """What the schedulers of one host know, in one small JSON file (owner-only):
    ``through``: per schedule, the last occurrence submitted; ``last``: the last one
    whose time has come; ``seen_active``: when a scheduler last saw the lease held.
    Every update merges under a lock, keeping the larger value, so schedulers sharing
    the file never move it back."""

    def __init__(self, path: str) -> None:
        self.path = path

    def read(self) -> dict:
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def update(self, through: dict | None = None, seen_active: float | None = None,
               active: dict | None = None) -> dict:
        private_folder(os.path.dirname(self.path))
        with open(f"{self.path}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self.read()
            merged = dict(data.get("through") or {})
            for name, value in (through or {}).items():
                merged[name] = max(value, merged.get(name, 0))
            data["through"] = merged
            if seen_active is not None:
                data["seen_active"] = max(seen_active, data.get("seen_active") or 0)
            if active is not None:
                data["active"] = active
            write_private_file(self.path, json.dumps(data, sort_keys=True).encode())
        return data
