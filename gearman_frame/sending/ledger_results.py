"""Results read from the job ledger (so from any host of the fleet) before this host's own
result store: the same interface as ResultStore, for sendjob, runadmin and the dashboard.

Workers record every outcome in the ledger; the local store still takes what the result
channel and foreground jobs bring (jobs of workers without the ledger, and a copy of the
rest), so nothing a host saw before is hidden.
"""
from __future__ import annotations

import os
from typing import Any

from ..envelope import loads
from ..ledger import Entry, Ledger
from .result_store import FAILED_STATUSES, ResultStore, Stored


def _stored(entry: Entry) -> Stored:
    record = loads(entry.result or b"{}")
    if not isinstance(record, dict):
        record = {"value": record}
    record.setdefault("function", entry.function)
    return Stored(entry.id, entry.function, entry.status or "unknown", entry.runs,
                  entry.ended or 0.0, record)


class LedgerResults:
    """The ledger's outcomes, then the local store's (see the module docstring)."""

    def __init__(self, ledger: Ledger, local: ResultStore) -> None:
        self.ledger, self.local = ledger, local

    @property
    def path(self) -> str:
        return f"{self.ledger.where} (store.url) or {self.local.path}"

    @property
    def ttl(self) -> float:
        return self.local.ttl

    def add(self, payload: bytes, unique: str | None = None) -> Stored | None:
        return self.local.add(payload, unique)

    def get(self, job_id: str) -> Stored | None:
        entry = self.ledger.look(job_id)
        if entry is not None and entry.state == "ended" and entry.result is not None:
            return _stored(entry)
        return self.local.get(job_id)

    def running(self, job_id: str) -> Entry | None:
        """The job as the ledger has it while it runs (None: not running)."""
        entry = self.ledger.look(job_id)
        return entry if entry is not None and entry.state == "running" else None

    def find(self, function: str | None = None, failed: bool = False,
             since: float | None = None, limit: int = 1000) -> list[Stored]:
        found = {e.id: _stored(e) for e in self.ledger.ended(
            function, FAILED_STATUSES if failed else (), since, limit)}
        for stored in self.local.find(function, failed, since, limit):
            found.setdefault(stored.id, stored)
        return sorted(found.values(), key=lambda s: s.received, reverse=True)[:limit]


def open_results(config: Any, create: bool = True,
                 ledger: Ledger | None = None) -> ResultStore | LedgerResults | None:
    """The results a role reads: the ledger's and this host's (store.url on), else this
    host's store alone. ``create=False``: None when there is neither a ledger nor a local
    store file yet (a reader that must not create one)."""
    local = ResultStore(config.resolve(config.client.result_store), config.client.result_ttl)
    store = config.store
    if store.url is None:
        return local if create or os.path.exists(local.path) else None
    if ledger is None:
        from ..ledger import open_ledger  # only a role with a ledger opens one
        ledger = open_ledger(store.url, store.lease, store.dedup_ttl, store.result_ttl, 2)
    return LedgerResults(ledger, local)
