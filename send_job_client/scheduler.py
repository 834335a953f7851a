"""`sendjob scheduler`: fire the config's schedules, once per occurrence, even with a
scheduler on each of several hosts.

How two schedulers share the work, with gearmand alone:

* **One is active**: the one holding the lease (gearman_frame.wire.lease: the single job
  of ``__sched__.GROUP``, on the first server it can reach). The others check every
  TICK whether the lease is free and note when they last saw it held.
* **The active one queues each occurrence ahead of its time** (``scheduler.lead``
  seconds, default 20) as a delayed job whose unique is ``sched:NAME:EPOCH``, sent to the
  server chosen by hashing that unique. gearmand holds it until its time and merges any
  second copy with it.
* **Taking over** (the active one died, so gearmand handed the lease on): every
  occurrence up to about ``last seen active + lead`` was already queued by the one that
  died, so the new one sends the occurrences from now on (copies of queued ones merge)
  and none from the past: nothing runs twice, nothing is skipped, as long as the
  takeover comes within ``lead`` (a SIGKILL: within a TICK or two).
* **After no scheduler ran** (all stopped longer than ``lead``), the occurrences missed
  since the last one queued (from the host's state file) are handled by ``catch_up``:
  all, the latest, or none.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time

from gearman_frame.sending.dispatch import Job
from gearman_frame.errors import FrameError, ServerUnavailable
from gearman_frame.sending.schedules import ScheduleState, lease_function, lease_unique
from gearman_frame.wire.lease import Lease

log = logging.getLogger(__name__)

#: Longest pause (seconds) between two passes of the reaper.
REAP_EVERY = 60.0
#: Seconds between two looks at the lease and the schedules.
TICK = 0.5
#: Slack (seconds) allowed for the last active scheduler's final tick and its sends.
TAKEOVER_SLACK = TICK + 1.0
#: Seconds between a standby's notes of the lease being held (in the state file).
SEEN_NOTE_INTERVAL = 1.0
#: Seconds between two deliveries of what waits in the outbox.
FLUSH_INTERVAL = 5.0


def _clock(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


class Scheduler:
    """Runs ``config.schedules`` through ``client`` (a JobClient) until stopped."""

    def __init__(self, client, config):
        self.client, self.config = client, config
        self.schedules = config.schedules
        self.lead = config.scheduler.lead
        self.state = ScheduleState(config.resolve(config.scheduler.state))
        group = config.scheduler.group
        self.lease = Lease(config.servers, lease_function(group), lease_unique(group),
                           client_id=f"scheduler.{socket.gethostname()}.{os.getpid()}")
        self.active = False
        #: Per schedule, the last occurrence this scheduler has queued (while active).
        self.through: dict[str, float] = {}
        self.seen_active = 0.0
        self._seen_noted = 0.0
        self._flushed = 0.0
        self._unreachable = False
        #: The reaper (store.url on): run by the active scheduler every REAP_EVERY s.
        self.reaper = None
        self._reaped = 0.0
        if config.store.on:
            from gearman_frame.sending.reaper import Reaper  # only with a ledger
            self.reaper = Reaper(config, client.ledger())

    def run(self, stop: threading.Event) -> None:
        log.info("scheduler: %d schedule(s), group %s, queued %gs ahead",
                 len(self.schedules), self.config.scheduler.group, self.lead)
        try:
            while not stop.is_set():
                self.tick(time.time())
                stop.wait(TICK)
        finally:
            if self.active:
                log.info("scheduler: stopping, lease released")
            self.lease.release()

    def tick(self, now: float) -> None:
        holding = self._take_lease()
        if holding and not self.active:
            self._activate(now)
        elif not holding and self.active:
            self.active = False
            log.warning("scheduler: lost the lease (its server went away); standing by")
        if self.active:
            self._queue_due(now)
            self._flush_outbox(now)
            self._reap(now)
        elif self.lease.held_elsewhere():
            self.seen_active = now
            if now - self._seen_noted >= SEEN_NOTE_INTERVAL:
                self._seen_noted = now
                self._save(seen_active=now)

    def _reap(self, now):
        """A pass of the reaper every min(requeue_after / 4, REAP_EVERY) seconds; an
        unreachable ledger is said and tried again at the next."""
        every = min(self.config.store.requeue_after / 4, REAP_EVERY)
        if self.reaper is None or now - self._reaped < every:
            return
        self._reaped = now
        try:
            self.reaper.run_once()
        except FrameError as err:
            log.warning("scheduler: reaper pass skipped: %s", err)

    def _take_lease(self):
        try:
            holding = self.lease.try_take()
        except ServerUnavailable as err:
            if not self._unreachable:
                log.warning("scheduler: %s; trying again every %gs", err, TICK)
            self._unreachable = True
            return False
        if self._unreachable:
            log.info("scheduler: a job server is reachable again")
        self._unreachable = False
        return holding

    # -- becoming active
    def _activate(self, now):
        self.active = True
        known = self.state.read()
        seen = max(self.seen_active, float(known.get("seen_active") or 0.0))
        through = known.get("through") or {}
        taking_over = bool(seen) and now - seen < self.lead - TAKEOVER_SLACK
        log.info("scheduler: active (holding the lease on %s)%s", self.lease.server,
                 " - taking over from a scheduler seen %.1fs ago" % (now - seen)
                 if taking_over else "")
        for schedule in self.schedules:
            covered = float(through.get(schedule.name) or 0.0)
            if seen:
                covered = max(covered, seen + self.lead - TAKEOVER_SLACK)
            missed = schedule.between(covered, now) if covered else []
            chosen = {"all": missed, "latest": missed[-1:], "none": []}[schedule.catch_up]
            if missed:
                log.warning("schedule %s: %d occurrence(s) missed while no scheduler ran "
                            "(%s to %s); catch_up %s runs %d now", schedule.name,
                            len(missed), _clock(missed[0]), _clock(missed[-1]),
                            schedule.catch_up, len(chosen))
            self.through[schedule.name] = now
            if chosen:
                self._queue(schedule, chosen, now)

    # -- queueing occurrences
    def _queue_due(self, now):
        for schedule in self.schedules:
            due = schedule.between(self.through[schedule.name], now + self.lead)
            if due:
                self._queue(schedule, due, now)

    def _queue(self, schedule, occurrences, now):
        channel = self.config.client.results
        jobs = [Job(schedule.function, schedule.args, dict(schedule.kwargs), background=True,
                    id=schedule.job_id(at), at=at if at > now else None,
                    server_key=schedule.job_id(at), reply_to=channel)
                for at in occurrences]
        try:
            deliveries = self.client.submit_many(jobs, background=True)
        except (FrameError, ValueError) as err:
            log.error("schedule %s: could not queue %d occurrence(s): %s", schedule.name,
                      len(jobs), err)
            return
        for at, delivery in zip(occurrences, deliveries):
            where = ("kept in the outbox" if delivery.outbox else
                     f"refused: {delivery.error}" if delivery.error else
                     f"queued on {delivery.server}")
            log.info("schedule %s fires at %s: job %s %s", schedule.name, _clock(at),
                     delivery.id, where)
        self.through[schedule.name] = max(self.through[schedule.name], occurrences[-1])
        self._save(through={schedule.name: self.through[schedule.name]})

    def _flush_outbox(self, now):
        if now - self._flushed < FLUSH_INTERVAL:
            return
        self._flushed = now
        try:
            if len(self.client.outbox):
                self.client.flush_outbox(budget=2.0)
        except FrameError as err:
            log.warning("scheduler: outbox not flushed: %s", err)

    def _save(self, **changes):
        try:
            self.state.update(**changes)
        except OSError as err:
            log.warning("scheduler: state file %s not written: %s", self.state.path, err)
