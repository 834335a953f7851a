"""The short way of `sendjob result ID [--json]`, and how `sendjob` prints a result.

Looking a result up takes a millisecond; starting the whole `sendjob` (YAML, the wire
layer, the dispatcher) took 230 ms of imports. So when the arguments are exactly a lookup
and the store already holds the job, this module answers with the standard library's
sqlite3 and json alone: the store's place comes from a snapshot the full `sendjob` writes
each time it loads a config (keyed by the config file's identity: an edited config makes
it stale, and then the full path runs). Everything else, including a job the store does
not hold yet (the full path collects the result channel first, and waits with --wait),
goes to the full `sendjob`.
"""
import json
import os
import sqlite3
import sys

from gearman_frame.defaults import DEFAULT_CONFIG_FILE, DEFAULT_RESULT_STORE, ENV_CONFIG
from gearman_frame.sending.store_schema import LOOKUP

#: Where snapshots of configs are kept (one small JSON file per config file).
SNAPSHOT_DIR = os.path.join(os.environ.get("XDG_CACHE_HOME")
                            or os.path.join(os.path.expanduser("~"), ".cache"),
                            "gearman-frame", "configs")
#: The marker of bytes in a record: such a record is printed by the full path.
_B64 = '"__b64__"'


def _parse(argv):
    """``(job id, json, config)`` for ``result ID [--json]`` with ``--config FILE``
    before or after, else None."""
    words: list[str] = []
    as_json, config, rest = False, None, list(argv)
    while rest:
        word = rest.pop(0)
        if word == "--json":
            if not words:  # before the subcommand: the full parser's error to give
                return None
            as_json = True
        elif word == "--config" and rest:
            config = rest.pop(0)
        elif word.startswith("--config="):
            config = word.split("=", 1)[1]
        elif word.startswith("-"):
            return None
        else:
            words.append(word)
    if len(words) != 2 or words[0] != "result":
        return None
    return words[1], as_json, config


def _identity(path):
    info = os.stat(path)
    return [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns]


def _snapshot_path(config):
    return os.path.join(SNAPSHOT_DIR, os.path.abspath(config).replace(os.sep, "%") + ".json")


def remember(config_file, result_store):
    """After a full load of ``config_file``: note where its result store is (best
    effort: a cache that cannot be written only means the full path next time)."""
    if config_file is None:
        return
    try:
        os.makedirs(SNAPSHOT_DIR, mode=0o700, exist_ok=True)
        target = _snapshot_path(config_file)
        temporary = f"{target}.{os.getpid()}"
        with open(temporary, "w") as handle:
            json.dump({"config": _identity(config_file), "result_store": result_store},
                      handle)
        os.replace(temporary, target)
    except OSError:
        pass


def _store_of(config):
    """The result store of ``config`` (None: no config file), or None if unknown."""
    if config is None:
        return os.path.realpath(DEFAULT_RESULT_STORE)
    try:
        with open(_snapshot_path(config)) as handle:
            snapshot = json.load(handle)
        if snapshot.get("config") != _identity(config):
            return None
        return snapshot.get("result_store")
    except (OSError, ValueError, AttributeError):
        return None


def lookup(argv):
    """Print a stored result as `sendjob result` does and return the exit code; None
    when the full `sendjob` must answer."""
    parsed = _parse(argv)
    if parsed is None:
        return None
    job_id, as_json, config = parsed
    if config is None:
        config = os.environ.get(ENV_CONFIG) or (
            DEFAULT_CONFIG_FILE if os.path.exists(DEFAULT_CONFIG_FILE) else None)
    store = _store_of(config)
    if not store or not os.path.exists(store):
        return None
    try:
        with sqlite3.connect(f"file:{store}?mode=rw", uri=True, timeout=5) as conn:
            row = conn.execute(LOOKUP, (job_id,)).fetchone()
    except sqlite3.Error:
        return None
    if row is None:
        return None
    runs, received, record = row
    text = bytes(record).decode("utf-8", "replace")
    if _B64 in text or "\\u" in text:
        return None  # bytes or escapes: the full path decodes those
    fields = json.loads(text)
    if as_json:
        sys.stdout.write(json.dumps({**fields, "runs": runs, "received": received},
                                    separators=(",", ":"), ensure_ascii=False) + "\n")
    else:
        print_result(fields)
    return 0 if fields.get("status") == "ok" else 1


def print_result(fields, raw=False):
    """A result as `sendjob` prints it: its output (a task's value), its stderr when it
    failed (or a raw job's, always), a warning if the output was cut, how it failed."""
    out = fields.get("stdout", "") if fields.get("value") is None else fields["value"]
    ok = fields.get("status") == "ok"
    if isinstance(out, bytes):
        sys.stdout.flush()
        sys.stdout.buffer.write(out)
    elif isinstance(out, str):
        sys.stdout.write(out)
    elif out is not None:
        print(json.dumps(out))
    err = fields.get("stderr")
    if err and (raw or not ok):
        sys.stderr.write(err if isinstance(err, str) else err.decode("utf-8", "replace"))
    if fields.get("truncated"):
        print(f"sendjob: warning: job {fields.get('id')}'s output was cut to its function's "
              f"output_limit: stdout {fields.get('stdout_bytes')} bytes, stderr "
              f"{fields.get('stderr_bytes')} bytes in all (the last part of each is shown)",
              file=sys.stderr)
    if not ok:
        print(f"sendjob: job {fields.get('id')} {fields.get('status')}: {fields.get('error')}",
              file=sys.stderr)
