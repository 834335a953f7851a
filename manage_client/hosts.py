"""`runadmin workers --by-host`: per IP, the workers there, their connections and
functions, the jobs they run now, and hosts that were seen and are gone.

gearmand lists each connection with the peer's IP. A host that vanished without a word
(its link cut) stays listed until gearmand's keepalive gives its connections up
(`runadmin server start` sets it to about 15 s), and then it is simply absent, which a
single look cannot tell from a host that never existed. So this view keeps the hosts it
saw in a small file beside the config (``var/hosts.json``, owner-only) and shows one that
is no longer there as ``gone`` (for a day), never as serving. Its processes that do not
answer the inspect control in time are marked too.
"""
from __future__ import annotations

import json
import os
import time

from gearman_frame.files import private_folder, write_private_file
from gearman_frame.queues import CONTROL_PREFIX

from gearman_frame.wire.admin_protocol import worker_name_of
from .inspect_workers import inspect, worker_processes

#: Where the hosts seen are remembered (beside the config).
HOSTS_FILE = "var/hosts.json"
#: Seconds a gone host is still shown.
FORGET_AFTER = 86400.0
#: Seconds the view waits for the workers' inspect answers.
ASK_WAIT = 2.0


def host_rows(config, connections, now: float | None = None) -> list[dict]:
    """One dict per IP: ip, state (serving / idle / gone), workers, connections,
    functions, running (job ids), not_answering (processes), last_seen."""
    now = time.time() if now is None else now
    hosts: dict = {}
    for conn in connections:
        name = worker_name_of(conn.client_id)
        entry = hosts.setdefault(conn.ip, {"ip": conn.ip, "workers": set(), "connections": 0,
                                           "functions": set(), "running": [],
                                           "not_answering": [], "last_seen": now})
        entry["connections"] += 1
        functions = {f for f in conn.functions if not f.startswith(CONTROL_PREFIX)}
        entry["functions"] |= functions
        if name and conn.functions:
            entry["workers"].add(name)
    _add_running(config, connections, hosts)
    path = config.resolve(HOSTS_FILE)
    seen = _read(path)
    rows = []
    for ip, entry in hosts.items():
        entry["state"] = "serving" if entry["functions"] else "idle"
        rows.append({**entry, "workers": sorted(entry["workers"]),
                     "functions": sorted(entry["functions"])})
    for ip, last in seen.items():
        if ip not in hosts and now - last["last_seen"] < FORGET_AFTER:
            rows.append({"ip": ip, "state": "gone", "workers": last.get("workers", []),
                         "connections": 0, "functions": [], "running": [],
                         "not_answering": [], "last_seen": last["last_seen"]})
    remember = {row["ip"]: {"last_seen": row["last_seen"], "workers": row["workers"]}
                for row in rows if row["state"] != "idle"}
    try:
        private_folder(os.path.dirname(path))
        write_private_file(path, json.dumps(remember, sort_keys=True).encode())
    except OSError:
        pass  # a read-only place: the view still shows what is there now
    return sorted(rows, key=lambda row: (row["state"] == "gone", row["ip"]))


def _add_running(config, connections, hosts):
    """The jobs each host's worker processes run now (their inspect answers)."""
    by_process = {}
    for conn in connections:
        if conn.client_id.endswith(".ctl"):
            by_process[conn.client_id[:-len(".ctl")]] = conn.ip
    processes = [p for p in worker_processes(connections) if p in by_process]
    if not processes:
        return
    for answer in inspect(config, processes, timeout=ASK_WAIT):
        host = hosts.get(by_process.get(answer.get("process")))
        if host is None:
            continue
        if "error" in answer:
            host["not_answering"].append(answer["process"])
            continue
        host["running"] += [job.get("job_id") for job in answer.get("running", [])]


def _read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    return {ip: entry for ip, entry in data.items()
            if isinstance(entry, dict) and isinstance(entry.get("last_seen"), (int, float))} \
        if isinstance(data, dict) else {}
