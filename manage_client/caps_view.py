"""The fleet-wide caps as operators see them (``runadmin inspect``, the exporter, the
dashboard): each capped function's limit, the slots held in the ledger now, and the jobs
waiting in gearmand for one."""
from __future__ import annotations

from typing import Any

from gearman_frame.errors import LedgerUnavailable


class CapsView:
    """Reads the ledger's slots (opened on first use, kept for the next look)."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.capped = [f for f in config.functions.values() if f.capped]
        self._ledger: Any = None

    def rows(self, waiting: dict[str, int]) -> list[dict]:
        """A row per capped function (``waiting``: jobs queued per function, summed over
        the servers); ``held`` is None when the ledger cannot be read."""
        if not self.capped:
            return []
        try:
            held: dict[str, int] | None = self._caps().in_use()
        except LedgerUnavailable:
            held = None
        return [{"function": f.name, "concurrency": f.concurrency, "rate": f.rate_text,
                 "held": None if held is None else held.get(f.name, 0),
                 "waiting": waiting.get(f.name, 0)} for f in self.capped]

    def _caps(self) -> Any:
        from gearman_frame.ledger import open_ledger  # only a fleet with caps opens it
        from gearman_frame.ledger.caps import Caps
        if self._ledger is None:
            store = self.config.store
            self._ledger = open_ledger(store.url, store.lease, store.dedup_ttl,
                                       store.result_ttl, 1)
        return Caps(self._ledger)

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None


def waiting_of(status_rows: list) -> dict[str, int]:
    """Jobs queued per function over every server's ``status`` rows."""
    waiting: dict[str, int] = {}
    for row in status_rows:
        waiting[row.function] = waiting.get(row.function, 0) + row.queued
    return waiting


def caps_lines(rows: list[dict]) -> list[str]:
    """``caps:`` then a line per capped function."""
    if not rows:
        return []
    lines = ["caps (fleet-wide, from the ledger):"]
    for row in rows:
        limits = ", ".join(filter(None, [
            f"concurrency {row['concurrency']}" if row["concurrency"] else "",
            f"rate {row['rate']}" if row["rate"] else ""]))
        held = "?" if row["held"] is None else str(row["held"])
        slots = f"{held}/{row['concurrency']} slots held, " if row["concurrency"] else ""
        lines.append(f"  {row['function']}: {limits}: {slots}{row['waiting']} jobs waiting "
                     "in gearmand")
    return lines
