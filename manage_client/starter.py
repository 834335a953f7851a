"""`runadmin init [DIR]`: a commented starter config.yaml for a first run (a gearmand on
loopback, a signing key made for it, an example function, the job ledger on SQLite), and
the three commands that come next. It never writes over a file."""
from __future__ import annotations

import os

from gearman_frame.errors import UsageError
from gearman_frame.files import write_private_file
from gearman_frame.signing import new_key_text

CONFIG = "config.yaml"
KEY = "fleet.key"

TEMPLATE = """\
# gearman-frame: a starter config written by `runadmin init`. Every key, its default and
# what it does: the configuration reference in the docs. Paths are relative to this file.

# The job servers (gearmand). `runadmin server start` runs one here, on loopback.
servers:
  - 127.0.0.1:{port}

# Every job is signed with this key, and workers run only jobs signed with it: copy the
# file (mode 0600) to every host that sends or runs jobs.
security:
  key_file: {key}

# The job ledger: each job runs once, and results can be read from any host that shares
# it. One host: SQLite, as here. A fleet: postgresql://USER@HOST:5432/DB.
store:
  url: sqlite:///var/ledger.sqlite

# What workers serve: a command (argv, no shell) whose {{fields}} come from the job.
# `sendjob run hello name=you` prints "hello you".
functions:
  hello:
    command: [echo, hello, "{{name}}"]
    timeout: 30
"""

NEXT = """\
wrote {config} and {key} (owner-only) in {folder}
next, in that folder:
  runadmin server start          # a gearmand on 127.0.0.1:{port}, its queue in var/
  runworkers                     # serves hello; Ctrl-C stops it
  sendjob run hello name=you     # in another terminal: prints "hello you"
"""


def write_starter(folder: str, port: int = 4730) -> str:
    """Write config.yaml and its key into ``folder`` (made if missing); the next steps,
    as text. UsageError (exit 2) if either file exists."""
    config, key = os.path.join(folder, CONFIG), os.path.join(folder, KEY)
    for path in (config, key):
        if os.path.lexists(path):
            raise UsageError(f"init: {path} exists; not overwriting it (choose another "
                             "folder, or remove it)")
    try:
        os.makedirs(folder, exist_ok=True)
        write_private_file(key, new_key_text())
        with open(config, "x", encoding="utf-8") as handle:
            handle.write(TEMPLATE.format(port=port, key=KEY))
    except OSError as err:
        raise UsageError(f"init: cannot write into {folder}: {err.strerror}") from err
    return NEXT.format(config=CONFIG, key=KEY, folder=os.path.abspath(folder), port=port)
