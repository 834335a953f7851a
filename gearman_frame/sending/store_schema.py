"""The result store's tables and its lookup by job id, in SQL: shared by the store
(result_store.py) and `sendjob result`'s short way, which reads the file with sqlite3
alone."""

SCHEMA = ("CREATE TABLE IF NOT EXISTS results (id TEXT PRIMARY KEY, function TEXT, "
          "status TEXT NOT NULL, runs INTEGER NOT NULL, received REAL NOT NULL, "
          "ended REAL, last_unique TEXT, record BLOB NOT NULL)",
          "CREATE INDEX IF NOT EXISTS results_received ON results (received)",
          "CREATE TABLE IF NOT EXISTS starts (notice TEXT PRIMARY KEY, id TEXT NOT NULL, "
          "received REAL NOT NULL)",
          "CREATE INDEX IF NOT EXISTS starts_id ON starts (id)")
#: A job's runs: the results that arrived for it, or the start notices (a run whose
#: worker died sent one and no result), whichever is more.
RUNS = "MAX(runs, (SELECT COUNT(*) FROM starts WHERE starts.id = results.id))"
#: One job's runs, when its result arrived, and its record (the result's JSON).
LOOKUP = f"SELECT {RUNS}, received, record FROM results WHERE id = ?"
