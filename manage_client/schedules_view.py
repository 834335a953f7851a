"""`runadmin schedules`: each schedule's next and last fire, the last result's status
(when this host's result store has it), and whether a scheduler holds the lease."""
from __future__ import annotations

import time

from gearman_frame.errors import FrameError, WireError
from gearman_frame.sending.ledger_results import open_results
from gearman_frame.sending.schedules import ScheduleState, lease_unique
from gearman_frame.wire import status_by_unique


def _clock(epoch):
    return None if epoch is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def lease_holder(config) -> str | None:
    """The server on which a scheduler holds the lease now, or None."""
    unique = lease_unique(config.scheduler.group)
    for server in config.servers:
        try:
            known = status_by_unique(server, [unique], 2.0).get(unique)
        except WireError:
            continue
        if known is not None and known.known and known.running:
            return str(server)
    return None


def schedule_rows(config, now: float | None = None) -> list[dict]:
    """One dict per schedule: name, function, when (cron/every), catch_up, next, last
    (ISO times, UTC), last_job, last_status."""
    now = time.time() if now is None else now
    through = ScheduleState(config.resolve(config.scheduler.state)).read().get("through") or {}
    try:
        store = open_results(config, create=False)
    except FrameError:  # an unreachable ledger: the schedules are still shown
        store = None
    rows = []
    for schedule in config.schedules:
        queued = through.get(schedule.name)
        last = schedule.at_or_before(min(now, queued)) if queued else None
        status = None
        if last is not None and store is not None:
            try:
                stored = store.get(schedule.job_id(last))
            except FrameError:
                stored = None
            status = stored.status if stored is not None else None
        rows.append({"name": schedule.name, "function": schedule.function,
                     "when": schedule.spec, "catch_up": schedule.catch_up,
                     "next": _clock(schedule.after(now)), "last": _clock(last),
                     "last_job": schedule.job_id(last) if last is not None else None,
                     "last_status": status})
    return rows
