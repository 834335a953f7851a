"""A fleet on one machine: hosts as network namespaces, each with its own address, joined
by a bridge of the fleet's own; links cut without a word (nftables drops every packet on
a host's bridge port: no FIN, no RST, carriers stay up), as a vanished host or link is.

Everything lives in namespaces this module makes and deletes: a hub namespace holding
the bridge, and one namespace per host with a veth pair into the hub. The addresses are
in 10.X.Y.0/24 picked at random, and exist only inside these namespaces: the machine's
own namespace gets no interface, route or rule. Needs root (CAP_NET_ADMIN), iproute2 and
nftables. Used by tests/test_fleet.py (the ``fleet`` fixture) and scripts/fleet.sh.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import yaml
from pathlib import Path
from typing import Iterable, Sequence

from .gearmand import QUEUE_SQLITE, LocalGearmand

BIN = os.path.dirname(sys.executable)
GEARMAN_PORT = 4730


def missing_capability() -> str | None:
    """Why a fleet cannot be made here (None if it can)."""
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed (bash scripts/setup.sh installs it)"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    probe = f"gfprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc


class Host:
    """One host: a namespace with an address on the fleet's bridge."""

    def __init__(self, fleet: Fleet, name: str, index: int) -> None:
        self.fleet, self.name = fleet, name
        self.ns = f"{fleet.tag}-{name}"
        self.ip = f"{fleet.prefix}.{index}"
        self.port = f"v{fleet.tag[2:]}{index}"  # its veth end in the hub (<= 15 chars)
        self.folder = fleet.folder / name
        self.folder.mkdir(parents=True, exist_ok=True)

    def start(self, argv: Sequence[object], log_name: str, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen:
        """Run ``argv`` inside this host; stopped (its group killed) at teardown."""
        out = open(self.folder / log_name, "ab")
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns, *map(str, argv)],
                                stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, cwd=cwd or self.folder,
                                start_new_session=True)
        out.close()
        self.fleet.procs.append(proc)
        return proc

    def run(self, *argv: object, timeout: int = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command inside this host and wait for it."""
        return subprocess.run(["ip", "netns", "exec", self.ns, *map(str, argv)],
                              capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})}, cwd=self.folder)

    def cut(self) -> None:
        """Drop every packet to and from this host at its bridge port, saying nothing."""
        self.fleet.nft(f"add element bridge gf cut {{ {self.port} }}")

    def restore(self) -> None:
        self.fleet.nft(f"delete element bridge gf cut {{ {self.port} }}")

    @property
    def address(self) -> str:
        return f"{self.ip}:{GEARMAN_PORT}"


class Fleet:
    """Hosts in network namespaces on a bridge of their own (see the module's doc)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).resolve()
        self.tag = f"gf{os.getpid() % 10000:04d}{random.randrange(100):02d}"
        self.prefix = f"10.{random.randrange(200, 250)}.{random.randrange(1, 250)}"
        self.hub = f"{self.tag}-hub"
        self.hosts: dict[str, Host] = {}
        self.procs: list[subprocess.Popen] = []

    # -- making and removing it
    def __enter__(self) -> Fleet:
        try:
            _run("ip", "netns", "add", self.hub)
            self._hub("link", "add", "br0", "type", "bridge")
            self._hub("link", "set", "br0", "up")
            self._hub("link", "set", "lo", "up")
            self.nft("add table bridge gf")
            self.nft("add set bridge gf cut { type ifname; }")
            self.nft("add chain bridge gf forward { type filter hook forward priority 0; }")
            self.nft("add rule bridge gf forward iifname @cut drop")
            self.nft("add rule bridge gf forward oifname @cut drop")
        except Exception:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, name: str) -> Host:
        host = Host(self, name, len(self.hosts) + 1)
        _run("ip", "netns", "add", host.ns)
        _run("ip", "link", "add", host.port, "netns", self.hub, "type", "veth", "peer", "name",
             "eth0", "netns", host.ns)
        self._hub("link", "set", host.port, "master", "br0", "up")
        for argv in (("addr", "add", f"{host.ip}/24", "dev", "eth0"),
                     ("link", "set", "eth0", "up"), ("link", "set", "lo", "up")):
            _run("ip", "-n", host.ns, *argv)
        self.hosts[name] = host
        return host

    def close(self) -> None:
        """Stop every process started here and delete every namespace (and so every link)."""
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for ns in [h.ns for h in self.hosts.values()] + [self.hub]:
            pids = _run("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:  # anything still inside (a daemonized child)
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            _run("ip", "netns", "del", ns, check=False)

    def _hub(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return _run("ip", "-n", self.hub, *argv)

    def nft(self, rule: str) -> subprocess.CompletedProcess[str]:
        return _run("ip", "netns", "exec", self.hub, "nft", rule)

    # -- what runs on the hosts
    def gearmand(self, host: Host) -> subprocess.Popen:
        """The C gearmand on ``host`` (SQLite queue), as `runadmin server start` runs it
        (its keepalive settings included), in the foreground."""
        server = LocalGearmand(host.folder / "gearmand", port=GEARMAN_PORT, host=host.ip,
                               queue=QUEUE_SQLITE, job_retries=10)
        (host.folder / "gearmand").mkdir(exist_ok=True)
        proc = host.start(server.command(), "gearmand.out")
        deadline = time.monotonic() + 10
        while host.run("bash", "-c", f"exec 3<>/dev/tcp/{host.ip}/{GEARMAN_PORT}",
                       timeout=5).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gearmand on {host.name} did not start: "
                                   + (host.folder / "gearmand.out").read_text()[-500:])
            time.sleep(0.1)
        return proc

    def config(self, host: Host, servers: Iterable[Host], **sections: object) -> Path:
        """A config file on ``host`` naming ``servers`` (Hosts running gearmand)."""
        path = host.folder / "config.yaml"
        # hosts on the fleet's own bridge, no key: protected mode would refuse them
        sections.setdefault("security", {"insecure": True})
        path.write_text(yaml.safe_dump({"servers": [s.address for s in servers],
                                        **sections}))
        return path

    def runworkers(self, host: Host, servers: Iterable[Host], functions: dict,
                   name: str | None = None, threads: int = 2,
                   **worker: object) -> subprocess.Popen:
        path = self.config(host, servers, functions=functions,
                           worker={"name": name or host.name, "threads": threads,
                                   "grace": 5, **worker})
        return host.start([f"{BIN}/runworkers", "--config", path], "worker.log")

    def log(self, host: Host, name: str = "worker.log") -> str:
        path = host.folder / name
        return path.read_text(errors="replace") if path.exists() else ""


def demo(folder: str | Path) -> int:
    """`make fleet`: 3 servers, 4 worker hosts and a sender host; 40 jobs sent; the
    status and the per-host view; one worker host cut off, the view again; all removed."""
    why = missing_capability()
    if why:
        print(f"fleet: cannot make network namespaces here: {why}", file=sys.stderr)
        return 2
    with Fleet(Path(folder)) as fleet:
        servers = [fleet.add(f"srv{i}") for i in (1, 2, 3)]
        workers = [fleet.add(f"w{i}") for i in (1, 2, 3, 4)]
        sender = fleet.add("snd")
        print(f"fleet: {len(fleet.hosts)} hosts in namespaces on {fleet.prefix}.0/24: "
              + ", ".join(f"{h.name} {h.ip}" for h in fleet.hosts.values()))
        for server in servers:
            fleet.gearmand(server)
        for worker in workers:
            fleet.runworkers(worker, servers, {"hello": {"shell": "echo hello from {who}"}})
        deadline = time.monotonic() + 20
        while not all("ready:" in fleet.log(w) for w in workers):
            if time.monotonic() > deadline:
                print("fleet: the workers did not start", file=sys.stderr)
                return 1
            time.sleep(0.2)
        config = fleet.config(sender, servers, logging={"level": "WARNING"})
        for number in range(40):
            sender.run(f"{BIN}/sendjob", "--config", config, "run", "hello",
                       f"who=job{number}", "--background")
        for title, argv in (("status", ["status"]), ("workers by host", ["workers", "--by-host"])):
            print(f"\n== runadmin {' '.join(argv)}")
            print(sender.run(f"{BIN}/runadmin", "--config", config, *argv).stdout)
        print(f"== {workers[0].name}'s link cut (no FIN, no RST); gearmand gives it up "
              "within its keepalive bound (about 15 s)")
        workers[0].cut()
        time.sleep(17)
        print(sender.run(f"{BIN}/runadmin", "--config", config, "workers", "--by-host").stdout)
    print("fleet: every namespace, link and process removed")
    return 0


if __name__ == "__main__":
    sys.exit(demo(sys.argv[1] if len(sys.argv) > 1 else "var/fleet"))
