"""The ledger's tables, versioned: each start applies the migrations it has not seen, in
one transaction no other process runs at the same time (a fleet's workers start at once).

``gf_jobs``: one row per job id. ``state`` is ``running`` (``holder`` has it until
``lease_until``) or ``ended`` (``status`` and ``result``, the published Result's JSON).
``runs`` counts the claims taken (more than one: a holder died and the job was taken
over). ``gf_sent``: background jobs as senders submitted them, for the reaper.
``gf_workflows``: one row per workflow (its plan, ``running``/``ok``/``failed``, the step
it ended at); ``gf_joins``: the steps of a group stage that ended ok (a chord's join).
``gf_slots``: a capped function's concurrency slots, each free or held by a worker thread
until its lease runs out; ``gf_rates``: a rate-limited function's next free start.
"""
from __future__ import annotations

from typing import Callable

#: The schema version this code writes and reads.
VERSION = 3

MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: ("CREATE TABLE IF NOT EXISTS gf_jobs (id TEXT PRIMARY KEY, function TEXT NOT NULL, "
        "state TEXT NOT NULL, holder TEXT, host TEXT, worker TEXT, lease_until {real}, "
        "runs INTEGER NOT NULL, status TEXT, result {blob}, started {real}, ended {real}, "
        "updated {real} NOT NULL)",
        "CREATE INDEX IF NOT EXISTS gf_jobs_ended ON gf_jobs (ended)",
        "CREATE INDEX IF NOT EXISTS gf_jobs_holder ON gf_jobs (holder)",
        "CREATE TABLE IF NOT EXISTS gf_sent (id TEXT PRIMARY KEY, function TEXT NOT NULL, "
        "server TEXT, payload {blob} NOT NULL, due {real} NOT NULL, sent {real} NOT NULL)",
        "CREATE INDEX IF NOT EXISTS gf_sent_due ON gf_sent (due)"),
    2: ("CREATE TABLE IF NOT EXISTS gf_workflows (id TEXT PRIMARY KEY, kind TEXT NOT NULL, "
        "plan {blob} NOT NULL, steps INTEGER NOT NULL, state TEXT NOT NULL, host TEXT, "
        "created {real} NOT NULL, ended {real}, last_step TEXT)",
        "CREATE INDEX IF NOT EXISTS gf_workflows_created ON gf_workflows (created)",
        "CREATE TABLE IF NOT EXISTS gf_joins (workflow TEXT NOT NULL, stage INTEGER NOT NULL, "
        "member INTEGER NOT NULL, PRIMARY KEY (workflow, stage, member))"),
    3: ("CREATE TABLE IF NOT EXISTS gf_slots (function TEXT NOT NULL, slot INTEGER NOT NULL, "
        "holder TEXT, lease_until {real}, PRIMARY KEY (function, slot))",
        "CREATE INDEX IF NOT EXISTS gf_slots_holder ON gf_slots (holder)",
        "CREATE TABLE IF NOT EXISTS gf_rates (function TEXT PRIMARY KEY, "
        "next_at {real} NOT NULL)"),
}


def migrate(execute: Callable[..., list[tuple]]) -> int:
    """Bring the schema to VERSION (``execute(sql, params)``); returns the version found.
    A ledger newer than this code is refused rather than misread."""
    execute("CREATE TABLE IF NOT EXISTS gf_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    found = execute("SELECT value FROM gf_meta WHERE name = 'schema'")
    version = int(found[0][0]) if found else 0
    if version > VERSION:
        raise ValueError(f"its schema is version {version}, newer than this gearman-frame "
                         f"reads ({VERSION}): upgrade gearman-frame")
    for number in range(version + 1, VERSION + 1):
        for statement in MIGRATIONS[number]:
            execute(statement)
    if version != VERSION:
        if found:
            execute("UPDATE gf_meta SET value = ? WHERE name = 'schema'", (str(VERSION),))
        else:
            execute("INSERT INTO gf_meta (name, value) VALUES ('schema', ?)", (str(VERSION),))
    return version


