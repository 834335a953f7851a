"""`runadmin web`: a dashboard of the fleet, served by the standard library's threading
HTTP server (a page, a small JSON API under ``/api/``, nothing else to install).

A sampler thread asks the servers for ``status`` (and the workers for ``inspect``) every
``SAMPLE_EVERY`` seconds and keeps the last ``HISTORY`` samples, so however many browsers
poll, gearmand and the workers are asked at one pace. Every state-changing request is a
POST carrying the dashboard's token (header ``X-Token``): on loopback a random one made at
start and written into the page; on any other address the one given with ``--token``
(or ``web.token_file``), which every request must then carry (the page takes it from its
URL's ``#token=...``, which browsers never send to the server)."""
from __future__ import annotations

import hmac
import json
import os
import secrets
import threading
import time
from typing import Any
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from gearman_frame.addresses import ServerAddress
from gearman_frame.errors import FrameError, UsageError
from gearman_frame.logs import printable
from gearman_frame.queues import CONTROL_PREFIX, DEAD_PREFIX, dead_letter_function
from gearman_frame.ledger.flows import Flows
from manage_client.caps_view import CapsView, waiting_of
from gearman_frame.sending.ledger_results import LedgerResults, open_results
from gearman_frame.sending.workflow_table import workflow_object

from .admin import AdminClient
from .dead_letters import read_queue
from .drain import Drainer, read_dump, resend_jobs
from .inspect_workers import inspect, worker_processes

#: Seconds between two samples of the servers and workers.
SAMPLE_EVERY = 2.0
#: Samples kept per function for the sparklines (5 minutes).
HISTORY = 150
#: Folder (beside the config) for the dumps the dashboard's clear and resend write.
DUMP_DIR = "var/dumps"
PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web_page.html")


class Fleet:
    """What the dashboard shows, sampled in the background, and what it can do."""

    def __init__(self, config):
        self.config = config
        self.lock = threading.Lock()
        self.status: list = []
        self.history: dict = {}  # (server, function) -> deque of queued counts
        self.workers: list = []
        self.inspected: list = []
        self.sampled_at = 0.0
        self.error: str | None = None
        self.stopping = threading.Event()
        self._results: Any = None  # the result store, once there is one
        self._caps_view = CapsView(config)

    # -- sampling
    def run(self):
        while not self.stopping.is_set():
            self.sample()
            self.stopping.wait(SAMPLE_EVERY)

    def sample(self):
        try:
            with AdminClient(self.config.servers) as admin:
                status, workers = admin.status(), admin.workers()
            processes = worker_processes(workers)
            states = inspect(self.config, processes, timeout=2.0) if processes else []
            error = None
        except FrameError as err:
            status, workers, states, error = [], [], [], str(err)
        with self.lock:
            self.status, self.workers, self.inspected = status, workers, states
            self.error, self.sampled_at = error, time.time()
            for row in status:
                key = (row.server, row.function)
                if key not in self.history:
                    self.history[key] = deque(maxlen=HISTORY)
                self.history[key].append(row.queued)

    # -- views
    def queues(self):
        with self.lock:
            return {"sampled_at": self.sampled_at, "error": self.error, "queues": [
                {"server": r.server, "function": r.function, "queued": r.queued,
                 "running": r.running, "workers": r.workers,
                 "dead": r.function.startswith(DEAD_PREFIX),
                 "history": list(self.history.get((r.server, r.function), ()))}
                for r in self.status if not r.function.startswith(CONTROL_PREFIX)]}

    def hosts(self):
        """Workers grouped by IP, with the jobs their processes run."""
        with self.lock:
            workers, states = list(self.workers), list(self.inspected)
        by_process = {s.get("process"): s for s in states}
        hosts: dict = {}
        for conn in workers:
            if not conn.functions:
                continue
            host = hosts.setdefault(conn.ip, {"ip": conn.ip, "connections": 0,
                                              "workers": set(), "running": []})
            host["connections"] += 1
            host["workers"].add(conn.client_id.rpartition(".")[0] or conn.client_id)
        for host in hosts.values():
            for process in sorted(host["workers"]):
                for job in by_process.get(process, {}).get("running", ()):
                    host["running"].append({**job, "process": process})
            host["workers"] = sorted(host["workers"])
        return {"hosts": sorted(hosts.values(), key=lambda h: h["ip"])}

    def results(self, limit=50):
        """Recent results and failures from the result store, when there is one."""
        path = self.config.resolve(self.config.client.result_store)
        try:
            # opened once (a ledger holds a pool of connections), not on every refresh
            store = self._results = self._results or open_results(self.config, create=False)
            if store is None:
                return {"store": path, "results": [], "failures": []}
            return {"store": store.path,
                    "results": [r.to_dict() for r in store.find(limit=limit)],
                    "failures": [r.to_dict() for r in store.find(failed=True, limit=limit)]}
        except FrameError as err:
            return {"store": path, "error": str(err), "results": [], "failures": []}

    def caps(self):
        """Capped functions: slots held (ledger) and jobs waiting (gearmand)."""
        with self.lock:
            status = list(self.status)
        try:
            return {"caps": self._caps_view.rows(waiting_of(status))}
        except FrameError as err:
            return {"caps": [], "error": str(err)}

    def workflows(self, limit=30):
        """Running and recent workflows from the ledger (none without one)."""
        if not self.config.store.on:
            return {"workflows": [], "ledger": False}
        try:
            store = self._results = self._results or open_results(self.config, create=False)
            if not isinstance(store, LedgerResults):
                return {"workflows": [], "ledger": False}
            flows = Flows(store.ledger)
            return {"workflows": [workflow_object(flows, w) for w in flows.recent(limit)],
                    "ledger": True}
        except FrameError as err:
            return {"error": str(err), "workflows": [], "ledger": True}

    # -- actions
    def resend_dead(self, function):
        """Send a function's dead letters back to it (drained into a dump first)."""
        dump = self._dump_path(dead_letter_function(function))
        report = Drainer(self.config.servers, dead_letter_function(function), dump,
                         client_id=f"runadmin-web.{os.getpid()}").run(timeout=60)
        jobs, _bad = read_dump(dump, self.config.keyring)
        back = resend_jobs(self.config, jobs, unsent_path=f"{dump}.unsent")
        return {"drained": report.removed, "resent": back.queued,
                "unsent": len(back.unsent), "dump": dump}

    def clear(self, function):
        dump = self._dump_path(function)
        report = Drainer(self.config.servers, function, dump,
                         client_id=f"runadmin-web.{os.getpid()}").run(timeout=60)
        return {"cleared": report.removed, "dump": dump}

    def dead(self, function):
        return {"letters": read_queue(self.config, dead_letter_function(function))}

    def _dump_path(self, function):
        folder = self.config.resolve(DUMP_DIR)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in function)
        return os.path.join(folder, f"{safe}-{time.strftime('%Y%m%dT%H%M%S')}.jsonl")


def make_handler(fleet, token, token_for_reads, cancel):
    """The request handler class, bound to a Fleet and its token."""
    page = open(PAGE, encoding="utf-8").read()

    class Handler(BaseHTTPRequestHandler):
        server_version = "gearman-frame"

        def log_message(self, *args):  # no line per request
            pass

        def _send(self, code, body, kind="application/json"):
            data = body.encode() if isinstance(body, str) else body
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(data)

        def _json(self, code, value):
            self._send(code, json.dumps(value, default=repr))

        def _token_ok(self):
            given = self.headers.get("X-Token", "")
            return hmac.compare_digest(given.encode(), token.encode())

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/":
                shown = "" if token_for_reads else token
                return self._send(200, page.replace("__TOKEN__", shown),
                                  "text/html; charset=utf-8")
            if token_for_reads and not self._token_ok():
                return self._json(403, {"error": "a token is required (X-Token)"})
            views = {"/api/queues": fleet.queues, "/api/hosts": fleet.hosts,
                     "/api/results": fleet.results, "/api/workflows": fleet.workflows,
                     "/api/caps": fleet.caps}
            if path in views:
                return self._json(200, views[path]())
            if path.startswith("/api/dead/"):
                return self._act(lambda: fleet.dead(path[len("/api/dead/"):]))
            return self._json(404, {"error": "not found"})

        def do_POST(self):
            if not self._token_ok():
                return self._json(403, {"error": "refused: this needs the dashboard's "
                                                 "token (X-Token)"})
            length = min(int(self.headers.get("Content-Length") or 0), 65536)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                return self._json(400, {"error": "expected a JSON body"})
            target = str(body.get("target", ""))
            actions = {"/api/resend": lambda: fleet.resend_dead(target),
                       "/api/clear": lambda: fleet.clear(target),
                       "/api/cancel": lambda: cancel(target)}
            if self.path not in actions or not target:
                return self._json(404, {"error": "unknown action or no target"})
            return self._act(actions[self.path])

        def _act(self, action):
            try:
                return self._json(200, action())
            except FrameError as err:
                return self._json(409, {"error": printable(str(err))})

    return Handler


def serve(config, host, port, token=None, cancel=None):
    """Serve the dashboard until interrupted. On loopback without a token, one is made."""
    loopback = ServerAddress(host, port).is_loopback
    if not loopback and not token:
        raise UsageError(f"runadmin web on {host} (not loopback) needs --token-file or "
                         "web.token_file: every request must carry it")
    fleet = Fleet(config)
    sampler = threading.Thread(target=fleet.run, name="sampler", daemon=True)
    sampler.start()
    handler = make_handler(fleet, token or secrets.token_urlsafe(24), not loopback, cancel)
    httpd = ThreadingHTTPServer((host, port), handler)
    print(f"dashboard: http://{host}:{port}/" + ("" if loopback else "#token=..."),
          flush=True)
    try:
        httpd.serve_forever()
    finally:
        fleet.stopping.set()
        httpd.server_close()
