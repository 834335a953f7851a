"""Run real `runworkers` processes and send them envelope jobs."""
import os
import resource
import signal
import subprocess
import sys

import yaml

from gearman_frame.envelope import Request, Result
from gearman_frame.wire import WireClient

from .helpers import wait_for

RUNWORKERS = os.path.join(os.path.dirname(sys.executable), "runworkers")
RUNADMIN = os.path.join(os.path.dirname(sys.executable), "runadmin")


class WorkerProcess:
    """One `runworkers` process with its own config file, log file and state folder."""

    def __init__(self, folder, servers, functions, name="w", threads=2, grace=5.0,
                 plugins=(), pythonpath=None, extra_args=(), nofile=None, extra_config=None,
                 worker=None):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.name = name
        self.config = folder / "config.yaml"
        self.config.write_text(yaml.safe_dump({
            "servers": [str(s) for s in servers],
            "worker": {"name": name, "threads": threads, "grace": grace, "startup_timeout": 5,
                       "progress_interval": 0.5, **(worker or {})},
            "plugins": list(plugins),
            "functions": functions,
            **(extra_config or {}),
        }))
        self.logfile = folder / f"{name}.log"
        env = dict(os.environ)
        if pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath),
                                                              env.get("PYTHONPATH")]))
        def limit():  # a descriptor limit like `ulimit -n`, set in the child only
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        with open(self.logfile, "ab") as log:
            self.proc = subprocess.Popen([RUNWORKERS, "--config", str(self.config), *extra_args],
                                         stdout=log, stderr=subprocess.STDOUT, env=env,
                                         cwd=folder, preexec_fn=limit if nofile else None)

    def wait_ready(self, timeout=15):
        wait_for(lambda: "ready:" in self.log() or self.proc.poll() is not None, timeout,
                 f"worker {self.name} to be ready")
        assert self.proc.poll() is None, self.log()
        return self

    def log(self):
        return self.logfile.read_text(errors="replace")

    def worker_pids(self):
        """The worker processes `runworkers` (their supervisor) runs now."""
        pid = self.proc.pid
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as handle:
                return [int(p) for p in handle.read().split()]
        except FileNotFoundError:
            return []

    def worker_pid(self):
        """The pid of the one worker process (``--processes 1``)."""
        wait_for(lambda: len(self.worker_pids()) == 1, 10, "one worker process")
        return self.worker_pids()[0]

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def envelope(*args, background=False, **kwargs):
    return Request(args=args, kwargs=kwargs, background=background)


def send(servers, function, *args, timeout=20, **kwargs):
    """Submit a foreground envelope job; return the decoded Result (ok or failed)."""
    request = envelope(*args, **kwargs)
    sent = WireClient(servers).submit(function, request.encode(), unique=request.id,
                                      timeout=timeout)
    if sent.state == "COMPLETE":
        return Result.decode(sent.result)
    assert sent.data_updates, f"a bare WORK_FAIL for {function}: no result details"
    return Result.decode(sent.data_updates[-1])


def send_in_thread(servers, function, *args, **kwargs):
    """Start :func:`send` in a thread (a job to kill, cancel or watch while it runs);
    ``join`` it, then its Result is in ``thread.results`` (empty if none came)."""
    import threading
    results = []
    thread = threading.Thread(target=lambda: results.append(
        send(servers, function, *args, **kwargs)))
    thread.results = results
    thread.start()
    return thread


def send_background(servers, function, *args, **kwargs):
    request = envelope(*args, background=True, **kwargs)
    WireClient(servers).submit(function, request.encode(), unique=request.id,
                               background=True, timeout=10)
    return request.id
