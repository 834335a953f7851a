"""A worker process's side of the job ledger: its holder name, the claims it holds and
the thread renewing their leases, and what it does while the ledger is unreachable
(takes no new job; each thread waits with the job it has, and goes on within a second
of the ledger's return).

A holder is named ``HOST/PID/RANDOM``: a claim held by a process of this host that is no
longer alive is released at once instead of waiting for its lease to run out (a worker
killed by the supervisor, the OOM killer or kill -9 on this host).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Callable

from gearman_frame.errors import LedgerUnavailable
from gearman_frame.ledger import Claim, Ledger, backend_for
from gearman_frame.processes import is_alive

log = logging.getLogger(__name__)

HOST = socket.gethostname()
#: Seconds between two tries while the ledger is unreachable.
OUTAGE_RETRY = 1.0
#: Seconds between two prunes of old outcomes.
PRUNE_EVERY = 3600.0


class Stopping(Exception):
    """Raised from a wait when the worker is asked to stop (the job is left to gearmand)."""


def holder_of_dead_process(holder: str | None) -> bool:
    """True if ``holder`` names a process of this host that no longer runs."""
    if not holder:
        return False
    host, _, rest = holder.partition("/")
    pid = rest.partition("/")[0]
    return host == HOST and pid.isdigit() and not is_alive(int(pid))


class Claims:
    """The claims of one worker process (see the module docstring)."""

    def __init__(self, url: str, lease: float, dedup_ttl: float, result_ttl: float,
                 stopping: threading.Event, pool_size: int = 4) -> None:
        self.ledger = Ledger(backend_for(url, pool_size), lease, dedup_ttl, result_ttl)
        self.stopping = stopping
        self.holder = f"{HOST}/{os.getpid()}/{os.urandom(4).hex()}"
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._prepared = False
        self._down_since: float | None = None
        self._renewer: threading.Thread | None = None
        #: Set by close(): leases are renewed until then (a stopping worker's jobs too).
        self._closed = threading.Event()
        #: More leases the renewer extends (a capped function's slots).
        self._also: list[Callable[[Ledger], object]] = []

    # -- the ledger, with its outages
    def call(self, action: Callable[[Ledger], object]) -> object:
        """``action(ledger)``, tried again every second while the ledger is unreachable;
        Stopping if the worker is asked to stop meanwhile."""
        while True:
            try:
                if not self._prepared:
                    self.ledger.prepare()
                    self._prepared = True
                value = action(self.ledger)
            except LedgerUnavailable as err:
                self._down(err)
                if self.stopping.wait(OUTAGE_RETRY):
                    raise Stopping() from err
                continue
            self._up()
            return value

    def _down(self, err: LedgerUnavailable) -> None:
        with self._lock:
            if self._down_since is None:
                self._down_since = time.monotonic()
                log.error("the job ledger is unreachable (%s): taking no new job until it "
                          "is back; jobs wait in gearmand", err)

    def renew_also(self, renew: Callable[[Ledger], object]) -> None:
        self._also.append(renew)

    def note_down(self, err: LedgerUnavailable) -> None:
        self._down(err)

    def note_up(self) -> None:
        self._up()

    def _up(self) -> None:
        if self._down_since is None:
            return
        with self._lock:
            if self._down_since is not None:
                log.warning("the job ledger is back after %.1fs: taking jobs again",
                            time.monotonic() - self._down_since)
                self._down_since = None

    # -- claims
    def claim(self, job_id: str, function: str, worker: str) -> Claim:
        claim: Claim = self.call(lambda ledger: ledger.claim(  # type: ignore[assignment]
            job_id, function, self.holder, HOST, worker))
        if claim.kind == "claimed":
            with self._lock:
                self._held.add(job_id)
        return claim

    def release_dead(self, job_id: str, holder: str) -> None:
        """Free a claim whose holder (a process of this host) died."""
        self.call(lambda ledger: ledger.release(job_id, holder))

    def finish(self, job_id: str, status: str, result: bytes) -> bool:
        """Record an outcome (waiting out an outage); False if the claim had been lost."""
        try:
            return bool(self.call(lambda ledger: ledger.finish(job_id, self.holder, status,
                                                               result)))
        finally:
            with self._lock:
                self._held.discard(job_id)

    def release(self, job_id: str) -> None:
        """Give an unfinished claim back (best effort: else its lease runs out)."""
        with self._lock:
            self._held.discard(job_id)
        try:
            self.ledger.release(job_id, self.holder)
        except LedgerUnavailable as err:
            log.warning("could not release the claim of %s (%s): its lease runs out in "
                        "%.0fs", job_id, err, self.ledger.lease)

    # -- the renewer
    def start(self) -> None:
        self._renewer = threading.Thread(target=self._renew, name="ledger-leases",
                                         daemon=True)
        self._renewer.start()

    def _renew(self) -> None:
        every = self.ledger.lease / 3
        pruned = 0.0
        while not self._closed.wait(every):
            try:
                with self._lock:
                    holding = bool(self._held)
                if holding:
                    self.ledger.renew(self.holder)
                for renew in self._also:
                    renew(self.ledger)
                if time.monotonic() - pruned > PRUNE_EVERY and self._prepared:
                    pruned = time.monotonic()
                    self.ledger.prune()
            except LedgerUnavailable as err:
                self._down(err)

    def close(self) -> None:
        self._closed.set()
        self.ledger.close()
