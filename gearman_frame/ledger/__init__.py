"""The job ledger: where a job is claimed before it runs and its outcome is kept, so it
runs once across the fleet and its result can be read from any host (see ``ledger``)."""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Iterator

from ..errors import LedgerUnavailable, UsageError
from .backends import Backend, PostgresBackend, SqliteBackend, shown
from .ledger import CLAIMED, ENDED, HELD, Claim, Entry, Ledger

__all__ = ["CLAIMED", "ENDED", "HELD", "Claim", "Entry", "Ledger", "LedgerUnavailable",
           "open_ledger", "key_job_id", "backend_for", "shown", "check_store",
           "ledger_of"]

log = logging.getLogger(__name__)

#: Prefix of a job id derived from an idempotency key.
KEY_PREFIX = "key-"


def key_job_id(key: str) -> str:
    """The job id of every job sent with idempotency key ``key``: the same from any
    sender, so the ledger (and gearmand, for copies queued together) sees one job."""
    import hashlib  # here: a worker imports this package and never derives a key
    return KEY_PREFIX + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def backend_for(url: str, pool_size: int = 4) -> Backend:
    """The backend of a resolved ``store.url`` (``sqlite:////ABSOLUTE`` or
    ``postgresql://...``)."""
    if url.startswith("sqlite:///"):
        return SqliteBackend(url[len("sqlite://"):] if url.startswith("sqlite:////")
                             else os.path.abspath(url[len("sqlite:///"):]))
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresBackend(url, pool_size)
    raise LedgerUnavailable(shown(url), "expected sqlite:///PATH or postgresql://...")


def open_ledger(url: str, lease: float, dedup_ttl: float, result_ttl: float,
                pool_size: int = 4) -> Ledger:
    """A ready ledger (schema migrated); LedgerUnavailable if it cannot be reached."""
    ledger = Ledger(backend_for(url, pool_size), lease, dedup_ttl, result_ttl)
    try:
        ledger.prepare()
    except BaseException:
        ledger.close()
        raise
    return ledger


@contextlib.contextmanager
def ledger_of(config: Any, needs: str) -> Iterator[Ledger]:
    """The ledger of ``config``'s store.url for one command, closed after it; UsageError
    (``needs`` says what needs it) when store.url is off."""
    store = config.store
    if store.url is None:
        raise UsageError(f"{config.path or 'the config'}: store.url is off: {needs}")
    ledger = open_ledger(store.url, store.lease, store.dedup_ttl, store.result_ttl, 1)
    try:
        yield ledger
    finally:
        ledger.close()


def check_store(config: Any, role: str) -> None:
    """At a role's start: the ledger reachable and its schema current, else
    LedgerUnavailable (one line naming store.url, exit 3). A file ledger with servers off
    loopback is said once: "once" then holds only among this host's workers."""
    store = config.store
    if not store.on:
        return
    ledger = open_ledger(store.url, store.lease, store.dedup_ttl, store.result_ttl, 1)
    ledger.close()
    remote = [str(s) for s in config.servers if not s.is_loopback]
    if not ledger.shared and remote:
        log.warning("%s: store.url is a SQLite file and %s %s not on loopback: a job runs "
                    "once only among this host's workers (use postgresql:// for the fleet)",
                    role, ", ".join(remote), "is" if len(remote) == 1 else "are")
