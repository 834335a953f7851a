"""A worker connection set that announces some functions only while it may take them
(fleet-wide caps): what to hold back comes from ``caps.withheld()`` (its owner's: the
wire layer knows no ledger), asked after each job and every ``caps.poll`` seconds while
something is held back. A change is announced on every connection (RESET_ABILITIES,
then CAN_DO for the rest) after the job's answer and before the next grab: gearmand
requeues a job whose worker resets its abilities before answering it, and never hands
out a job the thread may not take. Such a thread grabs no job ahead of its answer."""
from __future__ import annotations

import time
from typing import Any

from . import packets as p


class CappedAbilities:
    """Mixed into WireWorker (see the module docstring)."""

    abilities: dict
    _links: dict
    #: The thread's caps (``functions``, ``poll``, ``withheld()``), or None.
    caps: Any = None
    _withheld: frozenset = frozenset()
    _caps_looked: float = 0.0

    def set_caps(self, caps: Any) -> None:
        """Hold back every capped function until the first look says otherwise."""
        self.caps = caps
        if caps is not None:
            self._withheld = frozenset(caps.functions)

    def _after_job(self) -> None:
        if self.caps is not None:
            self.refresh_caps(time.monotonic(), after_job=True)

    def announced(self) -> list[str]:
        """The functions this worker says it can do now."""
        return [task for task in self.abilities if task not in self._withheld]

    def refresh_caps(self, now: float, after_job: bool = False) -> bool:
        """Look again (after a job: always; else every ``caps.poll`` seconds while some
        are held back); announce a change. True if a function may be taken again."""
        caps = self.caps
        if caps is None or (not after_job and (not self._withheld
                                               or now - self._caps_looked < caps.poll)):
            return False
        self._caps_looked = now
        withheld = caps.withheld()
        if withheld == self._withheld:
            return False
        freed = bool(self._withheld - withheld)
        self._withheld = withheld
        for link in self._links.values():
            conn = link.conn
            conn.queue(p.RESET_ABILITIES)
            for task in self.announced():
                conn.queue(p.CAN_DO, task)
        return freed
