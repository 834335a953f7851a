"""`python -m bench.soak [--minutes 3]`: a bounded chaos soak of the whole pipeline.

Three gearmands (SQLite queues), three `runworkers` processes of four threads, and two
senders (foreground and background, shell and Python jobs, each job appending its id to
a ledger) run while a fault loop kills and restarts workers and servers, freezes a server
for a few seconds and kills running commands' process groups. Then the faults stop, the
outbox is flushed, the queues drain, and the ledger is checked: every job sent must have
run or have been reported failed to its sender (0 lost), and no process may be left
(0 orphans, 0 zombies). With the job ledger on, a third sender starts workflows (chains
of three steps and chords of three members and a callback, each step recording its own
id): every step runs once, and every workflow ends. Prints a summary, writes bench/SOAK.md, exits 1 if anything was
lost or left behind.
"""
import argparse
import collections
import os
import random
import signal
import sys
import tempfile
import threading
import time

import yaml

from gearman_frame.addresses import parse_address
from gearman_frame.config import load_config
from gearman_frame.daemons.gearmand import QUEUE_SQLITE, LocalGearmand, free_port
from gearman_frame.errors import FrameError
from gearman_frame.queues import dead_letter_function
from manage_client.admin import AdminClient
from manage_client.drain import Drainer, read_dump
from send_job_client import Job, JobClient

from .processes import BIN, Proc

SOAK_TASKS = '''
import time
from gearman_frame.tasks import task

@task("soak_py")
def soak_py(ledger, id, pause):
    time.sleep(pause)
    with open(ledger, "a") as handle:
        handle.write(id + "\\n")
    return id
'''
FUNCTIONS = {
    "soak_sh": {"shell": "sleep {pause}; echo {id} >> {ledger}", "timeout": 20, "retries": 3,
                "retry_delay": 0.2},
    "soak_py": {"timeout": 20, "retries": 3, "retry_delay": 0.2},
}
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "SOAK.md")


class Soak:
    def __init__(self, folder, minutes, seed, store=None):
        self.folder = folder
        self.deadline = time.monotonic() + minutes * 60 * 0.8
        self.drain_budget = minutes * 60 * 0.2 + 60
        self.rng = random.Random(seed)
        self.ledger = os.path.join(folder, "ledger")
        self.servers = [LocalGearmand(os.path.join(folder, f"g{i}"), port=free_port(),
                                      queue=QUEUE_SQLITE) for i in range(3)]
        self.config_path = os.path.join(folder, "config.yaml")
        self.sent = {}  # id -> kind
        self.reported_failed = {}
        self.faults = collections.Counter()
        self.workers = {}
        self.stop = threading.Event()
        self.lock = threading.Lock()
        #: The ledger (store.url): None (off), a sqlite:/// URL or a PostgresCluster.
        self.store = store
        #: Servers lost for good (killed, their queue deleted, never started again).
        self.lost = set()
        self.halfway = time.monotonic() + minutes * 60 * 0.4
        self.reaped = 0
        #: Workflows started: id -> the ids its steps record; a step's recorded id -> its
        #: job id (WORKFLOW.STAGE.INDEX).
        self.workflows = {}
        self.step_of = {}

    # -- set-up
    def write_config(self):
        with open(os.path.join(self.folder, "soaktasks.py"), "w") as handle:
            handle.write(SOAK_TASKS)
        with open(self.config_path, "w") as handle:
            yaml.safe_dump({"servers": [s.address for s in self.servers],
                            "logging": {"level": "WARNING"},
                            "client": {"timeout": 5, "resend": 6, "outbox": "outbox.sqlite"},
                            "worker": {"threads": 4, "grace": 10},
                            "plugins": ["soaktasks"], "functions": FUNCTIONS,
                            **({"store": {"url": self.store_url,
                                          "requeue_after": 10}} if self.store else {})},
                           handle)

    @property
    def store_url(self):
        return self.store if isinstance(self.store, str) else self.store.url

    def start_worker(self, name):
        env = {**os.environ, "PYTHONPATH": self.folder}
        self.workers[name] = Proc([os.path.join(BIN, "runworkers"), "--config",
                                   self.config_path, "--name", name], env=env)

    # -- load
    def sender(self, background):
        config = load_config(self.config_path, environ={})
        kind = "bg" if background else "fg"
        with JobClient(config) as client:
            while not self.stop.is_set() and time.monotonic() < self.deadline:
                jobs = []
                for _ in range(10):
                    function = self.rng.choice(list(FUNCTIONS))
                    job = Job.of(function, ledger=self.ledger, pause=self.rng.choice(
                        [0, 0.05, 0.2]))
                    job.kwargs["id"] = job.id
                    jobs.append(job)
                    with self.lock:
                        self.sent[job.id] = f"{kind}-{function}"
                results = client.submit_many(jobs, background=background)
                if not background:
                    for job, result in zip(jobs, results):
                        if not result.ok:
                            self.reported_failed[job.id] = _reason(result)
                time.sleep(0.05)

    def workflow_sender(self):
        """Chains and chords of soak_sh steps, started in the background."""
        from gearman_frame.workflows import chain, chord, group, signature
        config = load_config(self.config_path, environ={})
        with JobClient(config) as client:
            while not self.stop.is_set() and time.monotonic() < self.deadline:
                token = os.urandom(6).hex()
                steps = [signature("soak_sh", ledger=self.ledger, pause=0.05,
                                   id=f"wf{token}-{k}") for k in range(4)]
                kind = self.rng.choice(["chain", "chord"])
                flow = (chain(*steps[:3]) if kind == "chain"
                        else chord(group(steps[:3]), steps[3]))
                try:
                    workflow = client.put_workflow(flow)
                except FrameError as err:  # the ledger stopped (a fault): nothing was sent
                    print(f"soak: a workflow not started: {err}", file=sys.stderr)
                    time.sleep(0.5)
                    continue
                ids = [s.kwargs["id"] for s in (steps[:3] if kind == "chain" else steps)]
                places = ([(k, 0) for k in range(3)] if kind == "chain"
                          else [(0, 0), (0, 1), (0, 2), (1, 0)])
                with self.lock:
                    self.workflows[workflow] = ids
                    self.step_of.update((i, f"{workflow}.{k}.{n}")
                                        for i, (k, n) in zip(ids, places))
                    self.sent.update((i, f"wf-{kind}") for i in ids)
                time.sleep(0.2)

    # -- faults
    def fault_loop(self):
        while not self.stop.is_set() and time.monotonic() < self.deadline - 5:
            time.sleep(self.rng.uniform(1.5, 3.5))
            kinds = ["kill_worker", "kill_server", "freeze_server", "kill_command"]
            if self.store:
                kinds.append("kill_worker_while_server_frozen")
                if not isinstance(self.store, str):
                    kinds.append("stop_ledger")
                if not self.lost and time.monotonic() > self.halfway:
                    kinds = ["lose_server"]
            fault = self.rng.choice(kinds)
            getattr(self, fault)()
            self.faults[fault] += 1

    def alive_servers(self):
        return [s for s in self.servers if s.address not in self.lost]

    def kill_worker_while_server_frozen(self):
        """A worker killed while a server it answers through is frozen: its answers (and
        results) wait in the frozen server's socket, or were never sent."""
        server = self.rng.choice(self.alive_servers())
        server.signal(signal.SIGSTOP)
        try:
            time.sleep(self.rng.uniform(0.3, 1.5))
            self.kill_worker()
        finally:
            server.signal(signal.SIGCONT)

    def stop_ledger(self):
        self.store.stop()
        time.sleep(self.rng.uniform(2.0, 6.0))
        self.store.start()

    def lose_server(self):
        """A gearmand host lost for good: killed, its queue file gone, never back (its
        address stays in the config); the reaper must send its jobs elsewhere."""
        server = self.rng.choice(self.alive_servers())
        self.lost.add(server.address)
        server.kill()
        for name in os.listdir(server.data_dir):
            if name.startswith("queue-"):
                os.unlink(os.path.join(server.data_dir, name))

    def kill_worker(self):
        name = self.rng.choice(sorted(self.workers))
        self.workers[name].proc.send_signal(signal.SIGKILL)
        self.workers[name].proc.wait()
        time.sleep(self.rng.uniform(0.2, 1.0))
        self.start_worker(name)

    def kill_server(self):
        server = self.rng.choice(self.alive_servers())
        server.kill()
        time.sleep(self.rng.uniform(0.5, 2.0))
        server.start()

    def freeze_server(self):
        server = self.rng.choice(self.alive_servers())
        server.signal(signal.SIGSTOP)
        time.sleep(self.rng.uniform(1.0, 4.0))
        server.signal(signal.SIGCONT)

    def kill_command(self):
        groups = tagged_groups()
        if groups:
            try:
                os.killpg(self.rng.choice(groups), signal.SIGKILL)
            except OSError:
                pass

    # -- the end
    def drain(self):
        config = load_config(self.config_path, environ={})
        with JobClient(config) as client:
            flushed = client.flush_outbox()
        deadline = time.monotonic() + self.drain_budget
        addresses = [parse_address(s.address) for s in self.alive_servers()]
        reaper = None
        if self.store:
            from gearman_frame.ledger import open_ledger
            from gearman_frame.sending.reaper import Reaper
            reaper = Reaper(config, open_ledger(self.store_url, 10, 86400, 86400))
        quiet = 0
        while time.monotonic() < deadline:
            with AdminClient(addresses) as admin:
                busy = sum(r.queued + r.running for r in admin.status()
                           if r.function in FUNCTIONS)
            if reaper is not None:  # what the lost server held is sent elsewhere
                self.reaped += reaper.run_once().resent
            quiet = quiet + 1 if busy == 0 else 0
            if quiet >= (30 if reaper is not None else 1):  # past requeue_after, quiet
                break
            time.sleep(0.5)
        return flushed

    def check(self):
        ended = self.workflow_states()  # first: a failed workflow's unrun steps are told
        ran = collections.Counter()
        if os.path.exists(self.ledger):
            with open(self.ledger) as handle:
                ran.update(line.strip() for line in handle if line.strip())
        sent = set(self.sent)
        dead = self.dead_letters()
        lost = sorted(sent - set(ran) - set(self.reported_failed) - dead)
        duplicated = {i: n for i, n in ran.items() if n > 1}
        by_kind = collections.Counter(self.sent[i] for i in duplicated if i in self.sent)
        failed = set(self.reported_failed) - set(ran)
        return {"workflows": len(self.workflows),
                "workflows by state": dict(collections.Counter(ended.values())),
                **self._counts(sent, ran, dead, lost, duplicated, by_kind, failed)}

    def _counts(self, sent, ran, dead, lost, duplicated, by_kind, failed):
        return {"sent": len(sent), "completed": len(sent & set(ran)),
                "reported failed": len(failed),
                "reported failed, why": dict(collections.Counter(
                    self.reported_failed[i] for i in failed)),
                "dead-lettered": len(dead), "lost": len(lost),
                "duplicated": len(duplicated), "duplicated by kind": dict(by_kind),
                "lost by kind": dict(collections.Counter(self.sent[i] for i in lost)),
                "duplicated ids": sorted(duplicated)[:10],
                "lost ids": lost[:10]}

    def workflow_states(self):
        """Each workflow's state in the ledger; the steps a failed one never ran count as
        reported failed (its sender is told the failed step)."""
        if not self.workflows:
            return {}
        from gearman_frame.ledger import open_ledger
        from gearman_frame.ledger.flows import Flows
        ledger = open_ledger(self.store_url, 10, 86400, 86400)
        states = {}
        try:
            flows = Flows(ledger)
            for workflow, ids in self.workflows.items():
                found = flows.get(workflow)
                states[workflow] = found.state if found else "unknown"
                if states[workflow] == "failed":
                    for step in ids:
                        self.reported_failed.setdefault(step, "its workflow failed")
        finally:
            ledger.close()
        return states

    def ledger_view(self, ids):
        """What the ledger says of ``ids`` (claims and sends): why a job was lost."""
        from gearman_frame.ledger import open_ledger
        ledger = open_ledger(self.store_url, 10, 86400, 86400)
        view = {}
        for shown in ids:
            job_id = self.step_of.get(shown, shown)
            entry = ledger.look(job_id)
            sent = ledger.backend.rows("SELECT server, due FROM gf_sent WHERE id = ?",
                                       (job_id,))
            view[shown[:16]] = (f"{entry.state} {entry.status} runs={entry.runs} "
                                f"host={entry.host} worker={entry.worker} "
                                f"result={(entry.result or b'')[:160]!r} holder={entry.holder} "
                                f"lease={entry.lease_left}" if entry else "never claimed") + \
                (f"; sent to {sent[0][0]}" if sent else "; not in gf_sent")
        ledger.close()
        return view

    def dead_letters(self):
        """Ids of jobs that failed every attempt: drained from the dead-letter queues."""
        addresses = [parse_address(s.address) for s in self.alive_servers()]
        dump = os.path.join(self.folder, "dead.jsonl")
        for function in FUNCTIONS:
            Drainer(addresses, dead_letter_function(function), dump).run(timeout=30)
        return {job["unique"] for job in read_dump(dump)[0]} if os.path.exists(dump) else set()


def _reason(result):
    """What a failed foreground result says, cut to its kind (for the summary)."""
    return f"{result.status}: {(result.error or '')[:60]}"


def tagged_groups():
    """Process groups of running commands (processes tagged with GEARMAN_FRAME_RUN)."""
    groups = set()
    for pid in tagged_pids():
        try:
            groups.add(os.getpgid(pid))
        except OSError:
            pass
    return sorted(groups)


def tagged_pids():
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as handle:
                    if b"GEARMAN_FRAME_RUN=" in handle.read():
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


def zombies():
    """Zombie children of the soak (its workers and servers, had one not been reaped)."""
    count, me = 0, os.getpid()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    fields = handle.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == b"Z" and int(fields[1]) == me:
                count += 1
    return count


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="how long (default 3)")
    parser.add_argument("--seed", type=int, default=None, help="random seed")
    parser.add_argument("--store", choices=["off", "sqlite", "postgresql"], default="off",
                        help="the job ledger (adds faults: a worker killed while a server "
                             "is frozen, a server lost for good, PostgreSQL stopped)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time())
    with tempfile.TemporaryDirectory(prefix="gf-soak-") as folder:
        store = None
        if args.store == "sqlite":
            store = f"sqlite:///{folder}/ledger.sqlite"
        elif args.store == "postgresql":
            from gearman_frame.daemons.postgres import PostgresCluster
            store = PostgresCluster(free_port()).start()
        soak = Soak(folder, args.minutes, seed, store)
        for server in soak.servers:
            server.start()
        soak.write_config()
        for i in range(3):
            soak.start_worker(f"soak{i}")
        time.sleep(1.5)
        threads = [threading.Thread(target=soak.sender, args=(bg,)) for bg in (False, True)]
        if store is not None:
            threads.append(threading.Thread(target=soak.workflow_sender))
        threads.append(threading.Thread(target=soak.fault_loop))
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for server in soak.alive_servers():  # every server up and thawed for the drain
            if not server.status().running:
                server.start()
            server.signal(signal.SIGCONT)
        flushed = soak.drain()
        for worker in soak.workers.values():
            worker.stop()
        time.sleep(1.0)
        summary = soak.check()
        summary["orphans"] = len(tagged_pids())
        summary["zombies"] = zombies()
        summary["outbox flushed"] = flushed.delivered
        summary["faults"] = dict(soak.faults)
        summary["seconds"] = round(time.monotonic() - started)
        if store is not None:
            summary["sent again by the reaper"] = soak.reaped
            if summary["lost"] or summary["duplicated"]:
                summary["lost or twice, as the ledger has them"] = soak.ledger_view(
                    summary["lost ids"] + summary["duplicated ids"])
        for server in soak.servers:
            server.stop()
        if store is not None and not isinstance(store, str):
            store.destroy()
    ledger = "off" if args.store == "off" else f"on {args.store}"
    text = (f"# Soak results, job ledger {ledger}\n\nLast run: "
            f"{time.strftime('%Y-%m-%d %H:%M')}, seed {seed}, {args.minutes:g} min, "
            f"{os.cpu_count()} cores.\n\n| what | value |\n|---|---|\n"
            + "\n".join(f"| {k} | {v} |" for k, v in summary.items()) + "\n")
    print(text)
    results = RESULTS if args.store == "off" else RESULTS.replace(".md",
                                                                  f"-{args.store}.md")
    with open(results, "w") as handle:
        handle.write(text)
    stuck = sum(n for state, n in summary["workflows by state"].items()
                if state not in ("ok", "failed"))
    bad = (summary["lost"] or summary["orphans"] or summary["zombies"] or stuck
           or (args.store != "off" and summary["duplicated"]))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
