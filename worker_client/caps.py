"""Fleet-wide caps on the worker's side: a thread announces a capped function (CAN_DO)
only while it may take a job of it, so the jobs over the cap stay queued in gearmand,
never in a worker's memory, and the thread's other functions keep flowing.

``concurrency: N``: the thread first takes one of the function's N slots in the ledger
(a lease, renewed with the claims'), and keeps it while it serves that function; it
gives it back when a job of another function comes (it is busy then) or the process
stops. A slot held by a process that died is free once its lease runs out. ``rate``: the function is announced while its next free start is less than one
interval away; a job that comes books the next start and waits for it (one interval at
most, unless several threads booked at the same instant). A thread that may not take a
function looks again every CAP_POLL seconds.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from gearman_frame.errors import LedgerUnavailable
from gearman_frame.ledger.caps import Caps
from gearman_frame.wire import AbandonJob

from .claims import Claims, Stopping

log = logging.getLogger(__name__)

#: Seconds between two looks at the ledger by a thread held back by a cap.
CAP_POLL = 0.25
#: Starts of a rate-limited function are booked this much wider apart than 1/rate: a
#: command's own start lags its booked time by a few milliseconds, unevenly, and the
#: rate holds as the commands see it.
SPACING = 1.01


def without_batch_tasks(capped: dict[str, Any], tasks: dict) -> dict[str, Any]:
    """``capped`` without the batch tasks (a batch thread holds many jobs at once: a cap
    per job cannot apply), each said once."""
    for function in [f for f in capped if getattr(tasks.get(f), "batch", None)]:
        log.error("%s is a batch task: its concurrency and rate are not applied", function)
        capped = {f: spec for f, spec in capped.items() if f != function}
    return capped


class FleetCaps:
    """The capped functions of one worker process, and their slots in the ledger."""

    def __init__(self, claims: Claims, capped: dict[str, Any], stopping: threading.Event):
        self.claims, self.capped, self.stopping = claims, capped, stopping
        self.prefix = claims.holder + "/"
        self._ensured: set[str] = set()
        self._lock = threading.Lock()
        self._threads: list[ThreadCaps] = []
        self._made = 0
        claims.renew_also(lambda ledger: Caps(ledger).renew(self.prefix))

    def for_thread(self, label: object, tasks: dict) -> "ThreadCaps | None":
        mine = {fn: spec for fn, spec in self.capped.items() if fn in tasks}
        if not mine:
            return None
        with self._lock:
            self._made += 1
            # a thread started again after it died: what it held is free again
            gone = [s for s in self._threads if s.label == label]
            self._threads = [s for s in self._threads if s.label != label]
        for share in gone:
            share.give_back_all()
        share = ThreadCaps(self, label, f"{self.prefix}{label}/{self._made}", mine)
        with self._lock:
            self._threads.append(share)
        return share

    def held_now(self) -> dict[str, int]:
        """Slots this process's threads hold, per function (``runadmin inspect``)."""
        held: dict[str, int] = {}
        with self._lock:
            for share in self._threads:
                for function in list(share.held):
                    held[function] = held.get(function, 0) + 1
        return held

    def caps(self) -> Caps:
        return Caps(self.claims.ledger)

    def ensure(self, function: str, count: int) -> None:
        with self._lock:
            if function not in self._ensured:
                self.caps().ensure(function, count)
                self._ensured.add(function)

    def close(self) -> None:
        """Free every slot this process holds (its threads have stopped)."""
        try:
            self.caps().free_all(self.prefix)
        except LedgerUnavailable as err:
            log.warning("could not free this process's slots (%s): their leases run out "
                        "in %.0fs", err, self.claims.ledger.lease)


class ThreadCaps:
    """One thread's share (see the module docstring); the wire layer asks ``withheld``
    before it grabs, the slot stage calls ``started`` before each job."""

    def __init__(self, fleet: FleetCaps, label: object, holder: str,
                 capped: dict[str, Any]):
        self.fleet, self.label, self.holder, self.capped = fleet, label, holder, capped
        self.functions = frozenset(capped)
        #: Slots this thread holds, by function.
        self.held: dict[str, int] = {}
        self.poll = CAP_POLL

    def withheld(self) -> frozenset[str]:
        """The capped functions this thread may not take now (it takes the slots it may)."""
        caps, out = self.fleet.caps(), set()
        try:
            for function, spec in self.capped.items():
                if spec.concurrency is not None and function not in self.held:
                    self.fleet.ensure(function, spec.concurrency)
                    slot = caps.take(function, spec.concurrency, self.holder)
                    if slot is None:
                        out.add(function)
                        continue
                    self.held[function] = slot
                if spec.rate is not None and caps.wait_for_start(function) > 1 / spec.rate:
                    out.add(function)
        except LedgerUnavailable as err:  # no cap can be known: take none of them
            self.fleet.claims.note_down(err)
            return self.functions
        self.fleet.claims.note_up()
        return frozenset(out)

    def started(self, function: str) -> None:
        """A job came: slots held for other functions go back (this thread is busy); a
        rate-limited one waits for the start it books."""
        for other in [f for f in self.held if f != function]:
            self._give_back(other)
        spec = self.capped.get(function)
        if spec is None or spec.rate is None:
            return
        try:
            wait: float = self.fleet.claims.call(  # type: ignore[assignment]
                lambda ledger: Caps(ledger).book_start(function, SPACING / spec.rate))
        except Stopping:
            raise AbandonJob("worker stopping while the ledger was unreachable") from None
        if wait > 0:
            log.info("rate %s: starting in %.3fs", spec.rate_text, wait)
            if self.fleet.stopping.wait(wait):
                raise AbandonJob("worker stopping while the job waited for its start")

    def give_back_all(self) -> None:
        for function in list(self.held):
            self._give_back(function)

    def _give_back(self, function: str) -> None:
        slot = self.held.pop(function)
        try:
            self.fleet.caps().give_back(function, slot, self.holder)
        except LedgerUnavailable as err:
            log.warning("could not give back slot %d of %s (%s): its lease runs out",
                        slot, function, err)
