"""`python -m bench --fleet`: the fleet on one machine (gearman_frame/daemons/fleet.py): 3 gearmand hosts,
4 worker hosts, 2 sender hosts, each a network namespace with its own address.

Throughput of no-op Python jobs and `true` commands, foreground and background, from
both senders at once; then a partition: one server host's link cut (every packet
dropped, no FIN, no RST) while background jobs flow, restored after a while: jobs lost
(target 0), runs of one job beyond the first, and the seconds from the restore until
every job ran. All hosts share this machine's cores: a correctness and recovery figure,
not a scaling one.
"""
from __future__ import annotations

import json
import tempfile
import textwrap
import time

from gearman_frame.daemons.fleet import BIN, Fleet, missing_capability

#: The job each sender host runs (a script: the senders run inside their namespaces).
SENDER = textwrap.dedent('''
    import json, sys, time
    from gearman_frame.config import load_config
    from send_job_client import Job, JobClient
    config_path, function, count, background, tag = sys.argv[1:6]
    count, background = int(count), background == "1"
    jobs = [Job.of(function, n=f"{tag}-{i}") for i in range(count)]
    with JobClient(load_config(config_path)) as client:
        started = time.perf_counter()
        out = client.submit_many(jobs, background=background)
        elapsed = time.perf_counter() - started
    ok = sum(1 for o in out if (o.handle if background else o.ok))
    kept = sum(1 for o in out if background and o.outbox)
    print(json.dumps({"seconds": elapsed, "ok": ok, "kept": kept}))
''')

TASKS = textwrap.dedent('''
    from gearman_frame.tasks import task

    @task("noop")
    def noop(n):
        return n
''')


def _wait_drained(fleet, sender, config, functions, timeout=300):
    """Seconds until no server holds a job of ``functions`` (queued or running)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        proc = sender.run(f"{BIN}/runadmin", "--config", config, "status", "--json")
        rows = json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else []
        busy = [r for r in rows if r.get("function") in functions and r.get("server") != "all"
                and (r.get("queued") or r.get("running"))]
        if proc.returncode == 0 and not busy:
            return time.monotonic() - started
        time.sleep(1.0)  # each look is a process: looking often would slow the drain
    raise RuntimeError(f"jobs of {functions} still queued after {timeout}s")


def _send(fleet, senders, config, function, count, background):
    """Each sender host sends ``count`` jobs at once; total jobs/s until all returned (a
    background run: until they ran)."""
    started = time.monotonic()
    procs = [host.start([f"{BIN}/python", host.folder / "send.py", config[host.name], function,
                         count, int(background), host.name], f"send-{function}.out")
             for host in senders]
    for proc in procs:
        proc.wait(600)
    outs = [json.loads(fleet.log(h, f"send-{function}.out").splitlines()[-1]) for h in senders]
    if background:
        _wait_drained(fleet, senders[0], config[senders[0].name], {function})
    elapsed = time.monotonic() - started
    return {"jobs_s": count * len(senders) / elapsed,
            "ok": sum(o["ok"] for o in outs), "kept": sum(o["kept"] for o in outs)}


def run(count=2000, partition_jobs=3000):
    why = missing_capability()
    if why:
        raise SystemExit(f"bench --fleet: {why}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="gf-fleet-") as folder, Fleet(folder) as fleet:
        servers = [fleet.add(f"srv{i}") for i in (1, 2, 3)]
        workers = [fleet.add(f"w{i}") for i in (1, 2, 3, 4)]
        senders = [fleet.add(f"snd{i}") for i in (1, 2)]
        for server in servers:
            fleet.gearmand(server)
        ledger = fleet.folder / "ledger"
        plugin = fleet.folder / "plugin"
        plugin.mkdir()
        (plugin / "fleetbench.py").write_text(TASKS)
        functions = {"true": {"command": ["true", "{n}"]},
                     "mark": {"shell": f"echo {{n}} >> {ledger}"}}
        for worker in workers:
            path = fleet.config(worker, servers, functions=functions, plugins=["fleetbench"],
                                worker={"name": worker.name, "threads": 2, "grace": 5},
                                logging={"level": "INFO"})
            worker.start([f"{BIN}/runworkers", "--config", path], "worker.log",
                         env={"PYTHONPATH": str(plugin)})
        config = {}
        for sender in senders:
            (sender.folder / "send.py").write_text(SENDER)
            config[sender.name] = fleet.config(sender, servers, logging={"level": "ERROR"},
                                               client={"timeout": 5, "resend": 3,
                                                       "outbox": "outbox.sqlite"})
        deadline = time.monotonic() + 30
        while not all("ready:" in fleet.log(w) for w in workers):
            if time.monotonic() > deadline:
                raise RuntimeError("bench --fleet: the workers did not start: "
                                   + fleet.log(workers[0])[-1000:])
            time.sleep(0.2)
        for function in ("noop", "true"):
            for background in (False, True):
                figures = _send(fleet, senders, config, function, count, background)
                rows.append((f"{function}, {'background' if background else 'foreground'}, "
                             f"2 senders x {count}", f"{figures['jobs_s']:.0f} jobs/s",
                             f"{figures['ok']} of {2 * count} accepted"
                             + (f", {figures['kept']} kept" if figures["kept"] else "")))
        rows += _partition(fleet, servers, senders, config, ledger, partition_jobs)
    return rows


def _partition(fleet, servers, senders, config, ledger, count):
    """Background `mark` jobs from both senders; srv1's link cut 1 s in, back after 8 s."""
    ledger.unlink(missing_ok=True)
    procs = [host.start([f"{BIN}/python", host.folder / "send.py", config[host.name], "mark",
                         count, 1, host.name], "send-partition.out") for host in senders]
    time.sleep(1.0)
    servers[0].cut()
    time.sleep(8.0)
    servers[0].restore()
    restored = time.monotonic()
    for proc in procs:
        proc.wait(600)
    for host in senders:  # what no server acknowledged: delivered now
        host.run(f"{BIN}/sendjob", "--config", config[host.name], "flush", timeout=300)
    expected = {f"{h.name}-{i}" for h in senders for i in range(count)}
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        seen = ledger.read_text().split() if ledger.exists() else []
        if expected <= set(seen):
            break
        time.sleep(0.2)
    recovered = time.monotonic() - restored
    seen = ledger.read_text().split() if ledger.exists() else []
    lost = len(expected - set(seen))
    extra = len(seen) - len(set(seen))
    kept = sum(json.loads(fleet.log(h, "send-partition.out").splitlines()[-1])["kept"]
               for h in senders)
    return [(f"partition: {2 * count} background jobs, srv1 cut for 8 s mid-run",
             f"lost {lost}, runs beyond the first {extra}",
             f"every job ran {recovered:.1f} s after the restore; {kept} waited in the "
             "senders' outboxes")]


def markdown(rows):
    lines = ["| fleet workload | figure | notes |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)
