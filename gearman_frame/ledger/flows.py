"""Workflows in the ledger: each one's row (plan, state, the step it ended at), the joins
of its group stages, and its steps' outcomes (gf_jobs rows whose ids are the steps').

Every write is one statement that only the first caller's changes: a workflow ends once
(``state = 'running'`` in its WHERE), a member joins once (its primary key). Deciding
that a join is complete may happen twice (two last members counting at the same
instant); both then send the callback, whose step id is claimed once: it runs once.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..envelope import dumps, loads
from .ledger import Entry, Ledger, _LOOK, _entry

RUNNING, OK, FAILED = "running", "ok", "failed"


@dataclass(frozen=True)
class Workflow:
    """A workflow as the ledger has it."""

    id: str
    kind: str
    plan: dict
    steps: int
    state: str
    host: str | None
    created: float
    ended: float | None
    #: The step it ended at: its last (ok) or the one that failed.
    last_step: str | None


_SELECT = "SELECT id, kind, plan, steps, state, host, created, ended, last_step FROM gf_workflows"


class Flows:
    """The workflow side of one ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger, self.backend = ledger, ledger.backend

    def start(self, workflow: str, kind: str, plan: dict, steps: int, host: str) -> None:
        self.backend.count(
            "INSERT INTO gf_workflows (id, kind, plan, steps, state, host, created) "
            "VALUES (?, ?, ?, ?, 'running', ?, {now}) ON CONFLICT (id) DO NOTHING",
            (workflow, kind, dumps(plan), steps, host))

    def join(self, workflow: str, stage: int, member: int) -> int:
        """Record member ``member`` of stage ``stage`` as ended ok; how many have."""
        self.backend.count("INSERT INTO gf_joins (workflow, stage, member) VALUES (?, ?, ?) "
                           "ON CONFLICT (workflow, stage, member) DO NOTHING",
                           (workflow, stage, member))
        rows = self.backend.rows("SELECT count(*) FROM gf_joins WHERE workflow = ? AND "
                                 "stage = ?", (workflow, stage))
        return int(rows[0][0])

    def end(self, workflow: str, state: str, step: str) -> bool:
        """End a running workflow (``ok`` or ``failed``) at ``step``; False if it had
        ended already (only the first end counts)."""
        return self.backend.count(
            "UPDATE gf_workflows SET state = ?, ended = {now}, last_step = ? "
            "WHERE id = ? AND state = 'running'", (state, step, workflow)) == 1

    def get(self, workflow: str) -> Workflow | None:
        rows = self.backend.rows(_SELECT + " WHERE id = ?", (workflow,))
        return _workflow(rows[0]) if rows else None

    def recent(self, limit: int = 50, running: bool = False) -> list[Workflow]:
        """The newest workflows first (``running``: only those still running)."""
        where = " WHERE state = 'running'" if running else ""
        rows = self.backend.rows(f"{_SELECT}{where} ORDER BY created DESC LIMIT ?", (limit,))
        return [_workflow(row) for row in rows]

    def outcomes(self, ids: list[str]) -> dict[str, Entry]:
        """The ledger's entries of these step ids (those it has)."""
        found: dict[str, Entry] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = self.backend.rows(f"{_LOOK} WHERE id IN ({', '.join('?' * len(chunk))})",
                                     chunk)
            found.update((row[0], _entry(row)) for row in rows)
        return found


def _workflow(row: tuple) -> Workflow:
    workflow, kind, plan, steps, state, host, created, ended, last_step = row
    decoded = loads(bytes(plan))
    return Workflow(workflow, kind, decoded if isinstance(decoded, dict) else {}, int(steps),
                    state, host, float(created), None if ended is None else float(ended),
                    last_step)
