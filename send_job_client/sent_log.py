"""Background jobs a server queued, written to the job ledger (store.url) for the reaper:
if that server's host is lost for good, the reaper sends again what no worker claimed.
Buffered (one write per 500 jobs, and at the end of each call that sends), so a batch of
background jobs costs the ledger a few writes, not one per job."""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

from gearman_frame.errors import LedgerUnavailable
from gearman_frame.sending.dispatch import Job

log = logging.getLogger(__name__)

#: Rows written at once.
BUFFER = 500
#: Rows kept while the ledger is unreachable (the oldest go beyond this).
MAX_PENDING = 100_000


class SentLog:
    """See the module docstring; ``ledger()`` opens the ledger on first use."""

    def __init__(self, ledger: Callable[[], Any]) -> None:
        self._ledger = ledger
        self._rows: list[tuple[str, str, str | None, bytes, float]] = []

    def add(self, job: Job, server: str | None) -> None:
        payload = job.data if job.data is not None else job.payload(None)
        self._rows.append((job.id, job.function, server, payload, job.at or time.time()))
        if len(self._rows) % BUFFER == 0:
            self.flush()

    def flush(self) -> None:
        rows, self._rows = self._rows, []
        if not rows:
            return
        try:
            self._ledger().record_sent(rows)
        except LedgerUnavailable as err:  # the jobs are queued; kept for the next write
            self._rows = (rows + self._rows)[-MAX_PENDING:]
            log.warning("%d background job(s) queued but not yet recorded for the reaper "
                        "(kept, written with the next): %s", len(rows), err)
