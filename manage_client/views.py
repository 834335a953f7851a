"""Human views of admin data: tables for status and workers (JSON is printed as is)."""
import datetime
from collections import defaultdict
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gearman_frame.logs import printable
from gearman_frame.queues import CONTROL_PREFIX

from .admin import totals
from gearman_frame.wire.admin_protocol import process_of, worker_name_of

#: Marker shown beside a function with queued jobs and no worker to take them.
NO_WORKER_MARK = "!"


def visible_status(rows, show_all=False):
    """Status rows without the per-worker control functions (unless ``show_all``)."""
    return [r for r in rows if show_all or not r.function.startswith(CONTROL_PREFIX)]


def status_table(rows, unreachable=None):
    """One table: a section per server, then the totals over servers."""
    table = Table(title="gearmand status", title_justify="left")
    # the note column only when there is something to note (no workers, unreachable)
    notes = bool(unreachable) or any(_mark(row) for row in rows)
    for column in ("server", "function", "queued", "running", "workers",
                   *(("note",) if notes else ())):
        table.add_column(column, justify="right" if column in ("queued", "running", "workers")
                         else "left")
    by_server = defaultdict(list)
    for row in rows:
        by_server[row.server].append(row)

    def add(server: str, row: Any) -> None:
        table.add_row(server, cell(row.function), str(row.queued), str(row.running),
                      str(row.workers), *((_mark(row),) if notes else ()))
    for server in sorted(by_server):
        for row in sorted(by_server[server], key=lambda r: r.function):
            add(server, row)
        table.add_section()
    if len(by_server) > 1:
        for row in totals(rows).values():
            add("[bold]all", row)
    for server, error in sorted((unreachable or {}).items()):
        table.add_row(server, "[red]unreachable", "", "", "", error[:40])
    return table


def cell(text):
    """A name any connection chose, safe in a table: control characters escaped, rich
    markup ("[red]") shown as text."""
    return escape(printable(text))


def _mark(row):
    return NO_WORKER_MARK + " no workers" if row.queued and not row.workers else ""


def visible_workers(connections, show_all=False):
    """Connections that serve something (all of them with ``show_all``)."""
    return [c for c in connections if show_all or c.functions]


def workers_table(connections):
    """Connections grouped by server, IP and worker name (threads counted)."""
    groups: defaultdict[tuple, dict[str, Any]] = defaultdict(
        lambda: {"threads": 0, "functions": set()})
    ours = {(c.server, c.client_id) for c in connections}
    for conn in connections:
        name = worker_name_of(conn.client_id)
        process = process_of(conn.client_id)
        if (name is not None and name != conn.client_id
                and (conn.server, f"{process}.ctl") not in ours):
            name = conn.client_id  # NAME.N is a gearman-frame thread only beside NAME.ctl
        key = (conn.server, conn.ip, name or f"- (fd {conn.fd})")  # no id: one each
        groups[key]["threads"] += 1
        groups[key]["functions"].update(conn.functions)
    table = Table(title="workers", title_justify="left")
    for column in ("server", "ip", "worker", "connections", "functions"):
        table.add_column(column, justify="right" if column == "connections" else "left")
    for (server, ip, name), info in sorted(groups.items()):
        functions = sorted(f for f in info["functions"] if not f.startswith(CONTROL_PREFIX))
        table.add_row(server, cell(ip), cell(name), str(info["threads"]),
                      " ".join(cell(f) for f in functions))
    return table


def print_table(table, stream=None, min_width=None):
    """Print a table; ``min_width`` keeps a wide one whole on a narrow (or no) terminal."""
    console = Console(file=stream, soft_wrap=True)
    if min_width and console.width < min_width:
        console = Console(file=stream, soft_wrap=True, width=min_width)
    console.print(table)


def hosts_table(hosts):
    """Per IP: state, workers, connections, functions, running jobs."""
    table = Table(title="workers by host", title_justify="left")
    for column in ("ip", "state", "workers", "connections", "functions", "running"):
        table.add_column(column, justify="right" if column == "connections" else "left")
    for host in hosts:
        state = host["state"]
        if state == "gone":
            seen = datetime.datetime.fromtimestamp(host["last_seen"]).isoformat(" ", "seconds")
            state = f"gone (last seen {seen})"
        elif host["not_answering"]:
            state += f", {len(host['not_answering'])} process(es) not answering"
        table.add_row(cell(host["ip"]), state, " ".join(cell(w) for w in host["workers"]),
                      str(host["connections"]), " ".join(cell(f) for f in host["functions"]),
                      " ".join(cell(j or "") for j in host["running"]) or "-")
    return table


def schedules_table(rows):
    """Schedules: name, function, when, next and last fire, the last result's status."""
    table = Table(title="schedules", title_justify="left")
    for column in ("name", "function", "when", "next fire", "last fire", "last status"):
        table.add_column(column, no_wrap=column.endswith("fire"))
    for row in rows:
        table.add_row(cell(row["name"]), cell(row["function"]), cell(row["when"]),
                      row["next"] or "", row["last"] or "-", cell(row["last_status"] or "-"))
    return table


def dead_table(letters):
    """Dead letters: function, job id, how it ended, why, attempts, when, kwargs."""
    table = Table(title="dead letters", title_justify="left")
    for column in ("function", "job id", "status", "reason", "attempts", "dead at",
                   "kwargs"):
        table.add_column(column)
    for letter in letters:
        when = letter.get("dead_at")
        shown = (datetime.datetime.fromtimestamp(when).isoformat(" ", "seconds")
                 if isinstance(when, (int, float)) else "")
        kwargs = letter.get("kwargs")
        table.add_row(cell(letter.get("function") or "?"), cell(letter.get("job_id") or ""),
                      cell(letter.get("status") or ""), cell((letter.get("reason") or "")[:80]),
                      str(letter.get("attempts") or ""), shown,
                      cell(", ".join(f"{k}={v!r}" for k, v in kwargs.items())[:80]
                           if kwargs else (f"raw, {letter.get('raw_bytes')} bytes"
                                           if letter.get("raw_bytes") is not None else "")))
    return table
