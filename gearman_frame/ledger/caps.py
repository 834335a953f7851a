"""Fleet-wide caps in the ledger: a capped function's concurrency slots (a slot is a
lease, renewed while its holder lives, free again when it runs out) and a rate-limited
function's next free start. Each change is one statement, so two workers on two hosts
asking at the same instant never both get the last slot or the same start."""
from __future__ import annotations

from .ledger import Ledger

_TAKE = ("UPDATE gf_slots SET holder = ?, lease_until = {now} + ? WHERE function = ? AND "
         "slot = (SELECT slot FROM gf_slots WHERE function = ? AND slot < ? AND "
         "(holder IS NULL OR lease_until < {now}) ORDER BY slot LIMIT 1{skip_locked}) "
         "RETURNING slot")
_BOOK = ("INSERT INTO gf_rates (function, next_at) VALUES (?, {now} + ?) "
         "ON CONFLICT (function) DO UPDATE SET next_at = "
         "{greatest}(gf_rates.next_at, {now}) + ? RETURNING next_at - ? - {now}")


class Caps:
    """The caps side of one ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger, self.backend = ledger, ledger.backend

    # -- concurrency
    def ensure(self, function: str, count: int) -> None:
        """Make sure ``function`` has slots 0 .. count-1 (more are left unused)."""
        self.backend.many("INSERT INTO gf_slots (function, slot) VALUES (?, ?) "
                          "ON CONFLICT (function, slot) DO NOTHING",
                          [(function, n) for n in range(count)])

    def take(self, function: str, count: int, holder: str) -> int | None:
        """A free slot of the first ``count`` for ``holder`` (its number), else None."""
        rows = self.backend.rows(_TAKE, (holder, self.ledger.lease, function, function,
                                         count))
        return int(rows[0][0]) if rows else None

    def give_back(self, function: str, slot: int, holder: str) -> None:
        self.backend.count("UPDATE gf_slots SET holder = NULL, lease_until = NULL WHERE "
                           "function = ? AND slot = ? AND holder = ?", (function, slot, holder))

    def renew(self, holder_prefix: str) -> int:
        """Extend the leases of every slot held by a holder named ``holder_prefix...``."""
        return self.backend.count("UPDATE gf_slots SET lease_until = {now} + ? WHERE "
                                  "holder LIKE ? AND lease_until >= {now}",
                                  (self.ledger.lease, holder_prefix + "%"))

    def free_all(self, holder_prefix: str) -> int:
        return self.backend.count("UPDATE gf_slots SET holder = NULL, lease_until = NULL "
                                  "WHERE holder LIKE ?", (holder_prefix + "%",))

    def in_use(self) -> dict[str, int]:
        """Slots held now, per function."""
        rows = self.backend.rows("SELECT function, count(*) FROM gf_slots WHERE holder IS "
                                 "NOT NULL AND lease_until >= {now} GROUP BY function")
        return {function: int(count) for function, count in rows}

    # -- rate
    def wait_for_start(self, function: str) -> float:
        """Seconds until ``function``'s next free start (0 or less: now)."""
        rows = self.backend.rows("SELECT next_at - {now} FROM gf_rates WHERE function = ?",
                                 (function,))
        return float(rows[0][0]) if rows else 0.0

    def book_start(self, function: str, interval: float) -> float:
        """Take ``function``'s next free start (the one after is ``interval`` later);
        seconds to wait until it (0 or less: start now)."""
        rows = self.backend.rows(_BOOK, (function, interval, interval, interval))
        return float(rows[0][0])
