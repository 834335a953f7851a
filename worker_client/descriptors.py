"""How many file descriptors a worker process needs, and making sure it has them.

A worker with too few (``ulimit -n``) took jobs it then could not run: a connection, a
command's pipes or a pidfd failed with EMFILE in the middle of a job. So at start it
raises its soft limit towards what it needs (up to the hard limit, as any process may),
and refuses to start, naming the number, when even the hard limit is below it."""
from __future__ import annotations

import resource

from gearman_frame.errors import UsageError

#: Descriptors a worker process holds whatever it serves: stdin/out/err, the log, the
#: state folder's lock and groups file, the keeper's pipe, /dev/null, the spools' files,
#: Python's own, with room to spare.
FIXED = 16
#: Descriptors one running command takes at once: its stdin pipe (both ends while it is
#: spawned), its two output pipes and its pidfd.
PER_COMMAND = 6


def needed(threads: int, servers: int, extra_connections: int = 1) -> int:
    """The descriptors of a process of ``threads`` job threads (plus ``extra_connections``
    threads of its own: the control one, batch tasks), each connected to ``servers``."""
    return FIXED + (threads + extra_connections) * servers + threads * PER_COMMAND


def ensure(threads: int, servers: int, extra_connections: int = 1) -> int:
    """Raise the soft RLIMIT_NOFILE to what is needed if it is lower (up to the hard
    limit); UsageError (exit 2) naming the number when the hard limit is too low.
    Returns the soft limit in force."""
    need = needed(threads, servers, extra_connections)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return soft
    if hard != resource.RLIM_INFINITY and hard < need:
        raise UsageError(f"a worker of {threads} thread(s) and {servers} server(s) needs at "
                         f"least {need} open files (RLIMIT_NOFILE, `ulimit -n`), and this "
                         f"process may have only {hard}: raise the limit or use fewer "
                         "threads")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return need
