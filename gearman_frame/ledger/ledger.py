"""The job ledger's operations: claim a job id before running it, renew the lease while
it runs, record its outcome, and read outcomes back (from any host of the fleet).

A claim is one statement (an insert that, on a conflict, takes the row only when its
holder's lease ran out, or its outcome is older than ``dedup_ttl``), so two deliveries
of one job on two hosts at the same instant get one claim between them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from . import schema
from .backends import Backend

log = logging.getLogger(__name__)

CLAIMED, ENDED, HELD = "claimed", "ended", "held"

_CLAIM = (
    "INSERT INTO gf_jobs (id, function, state, holder, host, worker, lease_until, runs, "
    "started, updated) VALUES (?, ?, 'running', ?, ?, ?, {now} + ?, 1, {now}, {now}) "
    "ON CONFLICT (id) DO UPDATE SET state = 'running', holder = excluded.holder, "
    "host = excluded.host, worker = excluded.worker, lease_until = excluded.lease_until, "
    "runs = gf_jobs.runs + 1, started = excluded.started, updated = excluded.updated, "
    "status = NULL, result = NULL, ended = NULL "
    "WHERE (gf_jobs.state = 'running' AND gf_jobs.lease_until < {now}) "
    "OR (gf_jobs.state = 'ended' AND gf_jobs.ended < {now} - ?) RETURNING runs")
_LOOK = ("SELECT id, function, state, holder, host, worker, lease_until - {now}, runs, "
         "status, result, started, ended FROM gf_jobs")


@dataclass(frozen=True)
class Entry:
    """One job as the ledger has it."""

    id: str
    function: str
    state: str
    holder: str | None
    host: str | None
    worker: str | None
    #: Seconds its lease has left (negative: ran out); None once it ended.
    lease_left: float | None
    runs: int
    status: str | None
    result: bytes | None
    started: float | None
    ended: float | None


@dataclass(frozen=True)
class Claim:
    """What a claim came to: ``CLAIMED`` (run it; ``runs`` > 1 is a takeover), ``ENDED``
    (answer with ``entry.result``) or ``HELD`` (running elsewhere: wait for it)."""

    kind: str
    runs: int = 1
    entry: Entry | None = None


class Ledger:
    """One ledger (see the module docstring); thread-safe."""

    def __init__(self, backend: Backend, lease: float, dedup_ttl: float,
                 result_ttl: float) -> None:
        self.backend = backend
        self.lease, self.dedup_ttl, self.result_ttl = lease, dedup_ttl, result_ttl

    @property
    def where(self) -> str:
        return self.backend.where

    @property
    def shared(self) -> bool:
        """True when other hosts can reach it (PostgreSQL), False for a file."""
        return self.backend.name != "sqlite"

    def prepare(self) -> int:
        """Create or migrate the schema; the version found (0: a new ledger)."""
        found: list[int] = []
        try:
            self.backend.migrate(lambda execute: found.append(schema.migrate(execute)))
        except ValueError as err:
            from ..errors import LedgerUnavailable
            raise LedgerUnavailable(self.where, str(err)) from err
        return found[0]

    def claim(self, job_id: str, function: str, holder: str, host: str,
              worker: str) -> Claim:
        rows = self.backend.rows(_CLAIM, (job_id, function, holder, host, worker,
                                          self.lease, self.dedup_ttl))
        if rows:
            return Claim(CLAIMED, int(rows[0][0]))
        entry = self.look(job_id)
        if entry is None:  # pruned between the two statements: claim again
            return self.claim(job_id, function, holder, host, worker)
        return Claim(ENDED if entry.state == "ended" else HELD, entry.runs, entry)

    def look(self, job_id: str) -> Entry | None:
        rows = self.backend.rows(_LOOK + " WHERE id = ?", (job_id,))
        return _entry(rows[0]) if rows else None

    def renew(self, holder: str) -> int:
        """Extend every lease ``holder`` has; how many."""
        return self.backend.count(
            "UPDATE gf_jobs SET lease_until = {now} + ?, updated = {now} "
            "WHERE holder = ? AND state = 'running'", (self.lease, holder))

    def finish(self, job_id: str, holder: str, status: str, result: bytes) -> bool:
        """Record the outcome of a claim ``holder`` has; False if it had lost it (its
        lease ran out and another worker took the job over)."""
        return self.backend.count(
            "UPDATE gf_jobs SET state = 'ended', status = ?, result = ?, ended = {now}, "
            "updated = {now}, holder = NULL, lease_until = NULL "
            "WHERE id = ? AND holder = ? AND state = 'running'",
            (status, result, job_id, holder)) == 1

    def release(self, job_id: str, holder: str) -> None:
        """Give a claim back unfinished (the job is left to gearmand): the next delivery
        takes it over at once."""
        self.backend.count("UPDATE gf_jobs SET lease_until = 0, updated = {now} "
                           "WHERE id = ? AND holder = ? AND state = 'running'",
                           (job_id, holder))

    def ended(self, function: str | None = None, statuses: tuple[str, ...] = (),
              since: float | None = None, limit: int = 1000) -> list[Entry]:
        """Ended jobs, newest first."""
        where: list[str] = ["state = 'ended'"]
        params: list[object] = []
        if function:
            where.append("function = ?")
            params.append(function)
        if statuses:
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            params += statuses
        if since is not None:
            where.append("ended >= ?")
            params.append(since)
        rows = self.backend.rows(f"{_LOOK} WHERE {' AND '.join(where)} "
                                 "ORDER BY ended DESC LIMIT ?", (*params, limit))
        return [_entry(row) for row in rows]

    def reopen(self, job_ids: list[str]) -> int:
        """Forget the outcomes of ``job_ids`` (an operator sends them again on purpose:
        `runadmin resend`), so their next delivery runs; how many were forgotten."""
        return sum(self.backend.count("DELETE FROM gf_jobs WHERE id = ? AND state = 'ended'",
                                      (job_id,)) for job_id in job_ids)

    # -- background jobs as sent (for the reaper)
    def record_sent(self, rows: list[tuple[str, str, str | None, bytes, float]]) -> None:
        """``(id, function, server, payload, due)`` of background jobs a server queued."""
        if rows:
            self.backend.many(
                "INSERT INTO gf_sent (id, function, server, payload, due, sent) "
                "VALUES (?, ?, ?, ?, ?, {now}) ON CONFLICT (id) DO UPDATE SET "
                "server = excluded.server, payload = excluded.payload, due = excluded.due, "
                "sent = excluded.sent", rows)

    def record_missing(self, rows: list[tuple[str, str, str | None, bytes, float]]) -> int:
        """Like record_sent, for jobs no server took yet (a workflow's lost step): rows
        the ledger has already (sent, or claimed) are left as they are; how many added."""
        added = 0
        for row in rows:
            added += self.backend.count(
                "INSERT INTO gf_sent (id, function, server, payload, due, sent) "
                "SELECT ?, ?, ?, ?, ?, {now} WHERE NOT EXISTS (SELECT 1 FROM gf_jobs WHERE "
                "id = ?) ON CONFLICT (id) DO NOTHING", (*row, row[0]))
        return added

    def unclaimed(self, older_than: float, limit: int = 1000
                  ) -> list[tuple[str, str, str | None, bytes, float]]:
        """Sent jobs due more than ``older_than`` seconds ago that have no outcome and no
        live claim (never claimed, or their holder died: its lease ran out). The ended
        ones are forgotten first."""
        self.backend.count("DELETE FROM gf_sent WHERE EXISTS (SELECT 1 FROM gf_jobs WHERE "
                           "gf_jobs.id = gf_sent.id AND gf_jobs.state = 'ended')")
        rows = self.backend.rows(
            "SELECT id, function, server, payload, due FROM gf_sent WHERE due < {now} - ? "
            "AND NOT EXISTS (SELECT 1 FROM gf_jobs WHERE gf_jobs.id = gf_sent.id AND "
            "gf_jobs.state = 'running' AND gf_jobs.lease_until >= {now}) "
            "ORDER BY due LIMIT ?", (older_than, limit))
        return [(i, f, srv, bytes(p), d) for i, f, srv, p, d in rows]

    def prune(self) -> int:
        """Delete outcomes (and ended workflows) older than ``result_ttl``; how many."""
        keep = max(self.result_ttl, self.dedup_ttl)
        self.backend.count("DELETE FROM gf_joins WHERE workflow IN (SELECT id FROM "
                           "gf_workflows WHERE state != 'running' AND ended < {now} - ?)",
                           (keep,))
        self.backend.count("DELETE FROM gf_workflows WHERE state != 'running' AND "
                           "ended < {now} - ?", (keep,))
        return self.backend.count("DELETE FROM gf_jobs WHERE state = 'ended' AND "
                                  "ended < {now} - ?", (keep,))

    def close(self) -> None:
        self.backend.close()


def _entry(row: tuple) -> Entry:
    (job_id, function, state, holder, host, worker, left, runs, status, result, started,
     ended) = row
    return Entry(job_id, function, state, holder, host, worker,
                 None if state == "ended" or left is None else float(left), int(runs),
                 status, bytes(result) if result is not None else None, started, ended)
