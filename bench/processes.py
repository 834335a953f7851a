"""The processes a benchmark run starts: gearmand, runworkers, baseline workers."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import yaml

from gearman_frame.daemons.tls_front import TlsFront
from gearman_frame.daemons.gearmand import QUEUE_BUILTIN, LocalGearmand, free_port
from manage_client.admin import AdminClient

BIN = os.path.dirname(sys.executable)


def start_gearmand(folder):
    server = LocalGearmand(folder, port=free_port(), queue=QUEUE_BUILTIN)
    server.start()
    return server


def start_tls_front(folder, server):
    """stunnel taking TLS on a free port in front of ``server``; (front, CA file). The
    front's ``address`` is ``tls://127.0.0.1:PORT``."""
    front = TlsFront(folder, "127.0.0.1", free_port(), backend_port=server.port)
    front.cert, front.key, ca = front.local_certificates()
    front.start()
    front.backend = server  # where the admin (plain, on loopback) sees its workers
    return front, ca


def worker_pids(pid):
    """The worker processes under a `runworkers` supervisor ``pid``."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(p) for p in handle.read().split()]
    except FileNotFoundError:
        return []


def worker_peak_rss_mib(supervisor_pid):
    """The largest peak RSS (VmHWM) of a supervisor's worker processes, in MiB: what one
    worker process costs (the supervisor itself is reported apart)."""
    return max((peak_rss_mib(pid) for pid in worker_pids(supervisor_pid)),
               default=float("nan"))


def pss_mib(pids):
    """Proportional set size (shared pages split among their users) of ``pids``, summed,
    in MiB: what a group of processes costs together."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
    return total / 1024


def peak_rss_mib(pid):
    """Peak resident memory (VmHWM) of a live process, in MiB."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def wait_workers(server, function, count, timeout=20):
    """Wait until ``count`` connections serve ``function`` on ``server``."""
    from gearman_frame.addresses import parse_address
    deadline = time.monotonic() + timeout
    server = getattr(server, "backend", server)
    with AdminClient([parse_address(server.address)]) as admin:
        while time.monotonic() < deadline:
            if sum(r.workers for r in admin.status() if r.function == function) >= count:
                return
            time.sleep(0.05)
    raise RuntimeError(f"{count} workers for {function} did not connect")


class Proc:
    """A started process that is stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, argv, env=None):
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env=env, start_new_session=True)

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(15)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def runworkers(server, functions, threads, name="bench", plugins=("plugins.eg",),
               key_file=None, tls_ca=None, serve=None, processes=1, env=None,
               metrics=False, store=None, tracing=None):
    """Start `runworkers` serving ``functions`` (config entries) with ``threads`` threads
    (checking signatures with ``key_file``; over TLS, verified by ``tls_ca``, when given:
    ``server`` is then the TLS front); ``serve``: only these functions (``--functions``)."""
    folder = tempfile.mkdtemp(prefix="gf-bench-")
    config = os.path.join(folder, "config.yaml")
    security = {"security": {"key_file": key_file}} if key_file else {}
    if tls_ca:
        security["tls"] = {"ca_file": str(tls_ca)}
    with open(config, "w") as handle:
        yaml.safe_dump({"servers": [server.address], "plugins": list(plugins),
                        "logging": {"level": "WARNING"},
                        "worker": {"name": name, "threads": threads, "grace": 5,
                                   "processes": processes,
                                   **({"metrics": f"127.0.0.1:{free_port()}"}
                                      if metrics else {})},
                        "functions": functions, **security,
                        **({"store": {"url": store}} if store else {}),
                        **({"tracing": tracing} if tracing else {})}, handle)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": repo, **(env or {})}
    only = ["--functions", ",".join(serve)] if serve else []
    return Proc([os.path.join(BIN, "runworkers"), "--config", config, *only], env=env)


def raw_worker(server, threads, mode):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": repo}
    return Proc([sys.executable, "-m", "bench.raw_worker", str(server.port), str(threads), mode],
                env=env)


def floor_worker(server, threads, function):
    """The W3 floor: a raw-protocol Python loop with no features (bench/floor_worker.py)."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": repo}
    return Proc([sys.executable, "-m", "bench.floor_worker", str(server.port), str(threads),
                 function], env=env)


def c_workers(server, function, count, command):
    """``count`` C `gearman -w` workers running ``command`` per job."""
    gearman = shutil.which("gearman")
    return [Proc([gearman, "-h", server.host, "-p", str(server.port), "-w", "-f", function,
                  "--", *command]) for _ in range(count)]
