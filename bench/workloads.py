"""The workloads: each runs once against a fresh set of workers and returns its figures."""
import contextlib
import dataclasses
import functools
import os
import statistics
import subprocess
import time

import python3_gearman

from gearman_frame.addresses import parse_address
from gearman_frame.config import (ClientConfig, Config, SecurityConfig, StoreConfig,
                                  TracingConfig)
from gearman_frame.files import write_private_file
from gearman_frame.signing import keyring_from_files, new_key_text
from manage_client.admin import AdminClient
from send_job_client import Job, JobClient

from .processes import (c_workers, floor_worker, pss_mib, raw_worker, runworkers,
                        worker_peak_rss_mib, worker_pids,
                        wait_workers)

WARMUP = 100


def _client(server, timeout=60.0, resend=0, key_file=None, tls_ca=None, tracing=None,
            store=None):
    security = (SecurityConfig(key_file=key_file, keyring=keyring_from_files(None, key_file))
                if key_file else SecurityConfig())
    address = parse_address(server.address)
    if tls_ca:
        from gearman_frame.tls import TlsClient
        address = dataclasses.replace(address, tls_client=TlsClient(str(tls_ca)))
    config = Config(servers=(address,),
                    client=ClientConfig(timeout=timeout, resend=resend,
                                        outbox="/tmp/gf-bench-outbox.sqlite"),
                    security=security, tracing=TracingConfig(**(tracing or {})),
                    store=StoreConfig(url=store))
    return JobClient(config)


def new_key_file(folder):
    """A signing key for the signed runs."""
    path = f"{folder}/bench.key"
    write_private_file(path, new_key_text())
    return path


def _raw_client(server):
    return python3_gearman.GearmanClient([server.address])


def _rate(count, seconds):
    return count / seconds if seconds else float("inf")


# --- W1: batch of no-op Python jobs --------------------------------------------------------

def w1_ours(server, threads, count, key_file=None, tls_ca=None, processes=1,
            metrics=False, store=None, tracing=None):
    with runworkers(server, {}, threads, key_file=key_file, tls_ca=tls_ca,
                    processes=processes, metrics=metrics, store=store,
                    tracing=tracing) as workers, \
            _client(server, key_file=key_file, tls_ca=tls_ca, tracing=tracing) as client:
        wait_workers(server, "reverse", threads * processes)
        client.submit_many([Job.of("reverse", "warm") for _ in range(WARMUP)])
        jobs = [Job.of("reverse", f"job-{i}") for i in range(count)]
        started = time.perf_counter()
        results = client.submit_many(jobs)
        elapsed = time.perf_counter() - started
        assert all(r.ok for r in results), "W1: a job failed"
        return {"jobs_s": _rate(count, elapsed), "rss": worker_peak_rss_mib(workers.pid)}


def w1_pair(server, count, block=500, key_file=None, metrics=False):
    """W1 throughput plain and with a key (``key_file``) or ``metrics``, both up on one
    gearmand, in alternating blocks of ``block`` jobs (the idle side costs nothing): the
    drift of a shared machine falls on both sides, which back-to-back runs of a few
    seconds each did not manage (ranges of +-15%). With ``metrics``, one worker of 1
    thread a side; two halves swap which function each side serves and which worker
    starts first (an A/A run without that favoured one side by 13%). With a key, signed
    and unsigned jobs go through one worker thread (the unsigned side's function has
    ``allow_unsigned``, so it pays only the look for a signature): the sides differ in
    signing and checking alone (two workers spread 0.88-0.96 over runs). Returns each
    block's jobs/s per side."""
    rates = {"plain": [], "other": []}
    for half, (plain_fn, other_fn) in enumerate((("reverse_a", "reverse_b"),
                                                 ("reverse_b", "reverse_a"))):
        if key_file:
            shared = functools.partial(runworkers, server, {plain_fn: {"allow_unsigned": True}},
                                       1, key_file=key_file, plugins=("bench.tasks",),
                                       serve=[plain_fn, other_fn])
            first, second = shared, contextlib.nullcontext
        else:
            plain_worker = functools.partial(runworkers, server, {}, 1,
                                             plugins=("bench.tasks",), serve=[plain_fn])
            other_worker = functools.partial(runworkers, server, {}, 1, metrics=metrics,
                                             plugins=("bench.tasks",), name="bench-other",
                                             serve=[other_fn])
            first, second = ((plain_worker, other_worker) if half == 0
                             else (other_worker, plain_worker))  # start order swapped too
        with first(), second(), _client(server) as plain, \
                _client(server, key_file=key_file) as other:
            wait_workers(server, plain_fn, 1)
            wait_workers(server, other_fn, 1)
            sides = {"plain": (plain, plain_fn), "other": (other, other_fn)}
            for client, function in sides.values():
                client.submit_many([Job.of(function, "warm") for _ in range(WARMUP)])
            for round_number in range(max(1, count // block // 2)):
                order = list(sides) if round_number % 2 == 0 else list(reversed(sides))
                for name in order:
                    client, function = sides[name]
                    jobs = [Job.of(function, f"job-{i}") for i in range(block)]
                    started = time.perf_counter()
                    results = client.submit_many(jobs)
                    rates[name].append(_rate(block, time.perf_counter() - started))
                    assert all(r.ok for r in results), f"W1 pair ({name}): a job failed"
    return rates


def batch_store(server, count, function, folder):
    """``count`` one-number foreground jobs (many in flight) through ``function``
    (store_one: a call and an append per job; store_batch: per 100 jobs), one worker
    thread; jobs/s from the first submit to the last result."""
    path = f"{folder}/{function}.txt"
    if os.path.exists(path):
        os.remove(path)
    with runworkers(server, {}, 1, plugins=("bench.tasks",), serve=[function]), \
            _client(server) as client:
        wait_workers(server, function, 1)
        client.submit_many([Job.of(function, number=-1, path=path) for _ in range(WARMUP)])
        jobs = [Job.of(function, number=i, path=path) for i in range(count)]
        started = time.perf_counter()
        results = client.submit_many(jobs)
        elapsed = time.perf_counter() - started
        assert all(r.ok for r in results), f"batch store ({function}): a job failed"
    with open(path) as handle:
        stored = [int(n) for n in handle.read().split() if n != "-1"]
    assert sorted(stored) == list(range(count)), f"batch store ({function}): lost numbers"
    return {"jobs_s": _rate(count, elapsed)}


def w1_raw(server, threads, count):
    with raw_worker(server, threads, "reverse") as workers:
        wait_workers(server, "raw_reverse", threads)
        client = _raw_client(server)
        client.submit_multiple_jobs([{"task": "raw_reverse", "data": "warm"}] * WARMUP)
        jobs = [{"task": "raw_reverse", "data": f"job-{i}"} for i in range(count)]
        started = time.perf_counter()
        done = client.submit_multiple_jobs(jobs, poll_timeout=300)
        elapsed = time.perf_counter() - started
        assert all(r.complete for r in done), "W1 baseline: a job did not complete"
        client.shutdown()
        return {"jobs_s": _rate(count, elapsed), "rss": worker_peak_rss_mib(workers.pid)}


def w1_background(server, count, channel, block=500):
    """Background no-op jobs through one worker thread, in alternating blocks of
    ``block`` jobs with a result channel (each job's result published to ``channel``
    before its answer) and without: both sides on one worker and one gearmand, so the
    drift of a shared machine falls on both (back-to-back runs of a fresh worker each
    ranged 0.71-0.92 over runs). A block is timed from its first submit until a
    foreground job sent after it returns: gearmand hands a function's jobs out in order
    and the one thread runs them in that order, so that job ends the block (no polling).
    Returns each block's jobs/s per side."""
    rates = {"plain": [], "channel": []}
    with runworkers(server, {}, 1), _client(server) as client:
        wait_workers(server, "reverse", 1)
        client.submit_many([Job.of("reverse", "warm") for _ in range(WARMUP)])
        for round_number in range(max(1, count // block)):
            order = ("plain", "channel") if round_number % 2 == 0 else ("channel", "plain")
            for side in order:
                reply_to = channel if side == "channel" else None
                jobs = [Job("reverse", (f"job-{i}",), reply_to=reply_to)
                        for i in range(block)]
                started = time.perf_counter()
                deliveries = client.submit_many(jobs, background=True)
                assert all(d.handle for d in deliveries), "W1 background: a job was not queued"
                end, = client.submit_many([Job.of("reverse", "end")])
                rates[side].append(_rate(block + 1, time.perf_counter() - started))
                assert end.ok, "W1 background: the block's last job failed"
    return rates


def store_lookup(folder, records=100_000, lookups=40):
    """`sendjob result ID` (a whole process) against a store of ``records`` results, and
    the interpreter importing what a lookup needs (the floor), in turn: p50 and p99 ms of
    the lookups, p50 of the floor."""
    import os
    import random
    import sqlite3
    import sys

    from gearman_frame.sending.result_store import ResultStore
    path = os.path.join(folder, "results.sqlite")
    store = ResultStore(path, 7 * 86400)
    store.add(b'{"id":"first","status":"ok"}')  # creates the file and its schema
    ids = [f"{i:032x}" for i in range(records)]
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO results (id, function, status, runs, received, ended, record) "
            "VALUES (?, 'reverse', 'ok', 1, ?, ?, ?)",
            ((i, time.time(), time.time(), f'{{"id":"{i}","status":"ok","stdout":"x"}}'
              .encode()) for i in ids))
    config = os.path.join(folder, "lookup.yaml")
    with open(config, "w") as handle:
        handle.write(f"client: {{result_store: {path}}}\n")
    sendjob = os.path.join(os.path.dirname(sys.executable), "sendjob")

    def timed(argv):
        started = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=False)
        return (time.perf_counter() - started) * 1000
    lookup_argv = [sendjob, "--config", config, "result"]
    timed([*lookup_argv, ids[0]])  # the first run loads the config and notes the store
    # the interpreter with the two modules a lookup needs, in turn with the lookups: the
    # machine's drift (the floor moved 30 -> 45 ms within minutes) falls on both
    floor_argv = [sys.executable, "-c", "import sqlite3, json"]
    lookup, floor = [], []
    for _ in range(lookups):
        lookup.append(timed([*lookup_argv, random.choice(ids)]))
        floor.append(timed(floor_argv))
    return {"p50_ms": _percentile(lookup, 0.5), "p99_ms": _percentile(lookup, 0.99),
            "floor_p50_ms": _percentile(floor, 0.5)}


# --- W2: sequential foreground latency -----------------------------------------------------

def _latencies_ms(call, count):
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _percentile(samples, fraction):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def _latencies(call, count):
    samples = _latencies_ms(call, count)
    return {"p50_ms": _percentile(samples, 0.5), "p99_ms": _percentile(samples, 0.99)}


def w2(server, count, block=100):
    """Sequential foreground latency of gearman-frame and of raw python3-gearman, with
    both workers up, measured in alternating blocks of ``block`` jobs (``count`` a side):
    the drift of a shared machine then falls on both sides alike. Returns each block's
    p50 and each side's p99 over all its jobs."""
    with runworkers(server, {}, 1), _client(server) as client, \
            raw_worker(server, 1, "reverse"):
        wait_workers(server, "reverse", 1)
        wait_workers(server, "raw_reverse", 1)
        raw = _raw_client(server)
        samples, p50s = _alternate({"ours": lambda: client.submit("reverse", "x"),
                                    "raw": lambda: raw.submit_job("raw_reverse", "x")},
                                   count, block)
        raw.shutdown()
    return {"ours_p50": p50s["ours"], "raw_p50": p50s["raw"],
            "ours_p99": _percentile(samples["ours"], 0.99),
            "raw_p99": _percentile(samples["raw"], 0.99)}


def w2_pair(plain_server, other_server, count, block=100, key_file=None, tls_ca=None,
            store=None, tracing=None):
    """W2's latency plain and with signing (``key_file``) or TLS (``tls_ca``: then
    ``other_server`` is a TLS front of the same gearmand), in alternating blocks, all
    through one gearmand. Run in two halves that swap which function (bench/tasks.py) each
    side uses, so a bias of either falls on both sides (an A/A run without them showed
    +0.05 ms). With TLS, one worker and client a side. With a key, signed and unsigned
    jobs go through one worker thread (the unsigned side's function has
    ``allow_unsigned``, so it pays only the look for a signature), a client a side: the
    sides differ in signing and checking alone (a worker a side spread +-0.07 ms in an
    A/A run, more than signing costs)."""
    p50s = {"plain": [], "other": []}
    for plain_fn, other_fn in (("reverse_a", "reverse_b"), ("reverse_b", "reverse_a")):
        start = functools.partial(runworkers, plugins=("bench.tasks",))
        if key_file:
            workers = [lambda: start(plain_server, {plain_fn: {"allow_unsigned": True}}, 1,
                                     key_file=key_file, serve=[plain_fn, other_fn])]
        else:
            workers = [lambda: start(plain_server, {}, 1, serve=[plain_fn]),
                       lambda: start(other_server, {}, 1, tls_ca=tls_ca, name="bench-other",
                                     serve=[other_fn], store=store, tracing=tracing)]
        with contextlib.ExitStack() as stack:
            for worker in workers:
                stack.enter_context(worker())
            plain = stack.enter_context(_client(plain_server))
            other = stack.enter_context(_client(other_server, key_file=key_file,
                                                tls_ca=tls_ca, tracing=tracing))
            wait_workers(plain_server, plain_fn, 1)
            wait_workers(plain_server, other_fn, 1)
            _samples, half = _alternate(
                {"plain": lambda: plain.submit(plain_fn, "x"),
                 "other": lambda: other.submit(other_fn, "x")}, count // 2, block)
        for side in p50s:
            p50s[side] += half[side]
    return p50s


def _alternate(sides, count, block):
    """Latencies of each side's call, measured in alternating blocks of ``block`` calls
    (``count`` a side), after a warm-up: every sample, and each block's p50, per side."""
    samples = {name: [] for name in sides}
    p50s = {name: [] for name in sides}
    for call in sides.values():
        _latencies_ms(call, WARMUP)
    for round_number in range(max(1, count // block)):
        order = list(sides) if round_number % 2 == 0 else list(reversed(sides))
        for name in order:
            block_samples = _latencies_ms(sides[name], block)
            samples[name] += block_samples
            p50s[name].append(_percentile(block_samples, 0.5))
    return samples, p50s


# --- W3: jobs that run `true` ---------------------------------------------------------------

def w3(server, threads, count, block=250, processes=1, env=None, metrics=False):
    """Jobs/s for `true` jobs through gearman-frame (a worker of ``threads`` threads),
    through ``threads`` C `gearman -w` workers and through the floor (a raw-protocol
    Python loop with no features, ``threads`` threads), all up, in alternating blocks of
    ``block`` jobs (``count`` a side), as W2 does: the drift of a shared machine falls
    on every side alike (idle workers of the other functions cost nothing). Returns each
    block's rate per side and the worker's peak RSS. With ``processes``, gearman-frame
    runs that many processes of ``threads`` threads (the others as many workers in all),
    and the PSS of the supervisor and its processes is set against the C workers'."""
    block = min(block, count)
    workers_in_all = threads * processes
    jobs = {"ours": lambda: [Job.of("run_true") for _ in range(block)],
            "c": lambda: [Job("c_true", data=b"") for _ in range(block)],
            "floor": lambda: [Job("floor_true", data=b"") for _ in range(block)]}
    rates = {name: [] for name in jobs}
    others = c_workers(server, "c_true", workers_in_all, ["true"])
    others.append(floor_worker(server, workers_in_all, "floor_true"))
    try:
        with runworkers(server, {"run_true": {"command": ["true"]}}, threads,
                        processes=processes, env=env, metrics=metrics) as workers, \
                _client(server) as client:
            for function in ("run_true", "c_true", "floor_true"):
                wait_workers(server, function, workers_in_all)
            for make in jobs.values():
                client.submit_many(make()[:WARMUP])
            for round_number in range(max(1, count // block)):
                names = list(jobs)
                order = names[round_number % 3:] + names[:round_number % 3]
                for name in order:
                    batch = jobs[name]()
                    started = time.perf_counter()
                    results = client.submit_many(batch)
                    rates[name].append(_rate(block, time.perf_counter() - started))
                    assert all(r.ok for r in results), f"W3 ({name}): a job failed"
            rss = worker_peak_rss_mib(workers.pid)
            pss = pss_mib([workers.pid, *worker_pids(workers.pid)])
            c_pss = pss_mib([proc.pid for proc in others[:-1]])
    finally:
        for proc in others:
            proc.stop()
    return {"ours": rates["ours"], "c": rates["c"], "floor": rates["floor"], "rss": rss,
            "pss": pss, "c_pss": c_pss}


# --- W4: a hung command with a background grandchild ------------------------------------------

def _count_procs(marker):
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout
    return len(out.split())


def _kill_procs(marker):
    subprocess.run(["pkill", "-9", "-f", marker], capture_output=True)


def w4_ours(server, count):
    marker = "sleep 10.51"
    functions = {"hang": {"shell": f"{marker} & {marker}", "timeout": 0.5}}
    with runworkers(server, functions, 4), _client(server) as client:
        wait_workers(server, "hang", 4)
        figures = _latencies(lambda: client.submit("hang"), count)
        time.sleep(0.3)
        figures["orphans"] = _count_procs(marker)
    _kill_procs(marker)
    return figures


def w4_raw(server, count):
    marker = "sleep 10.61"
    with raw_worker(server, 4, "shell"):
        wait_workers(server, "raw_shell", 4)
        client = _raw_client(server)
        figures = _latencies(lambda: client.submit_job("raw_shell", f"{marker} & {marker}"),
                             count)
        client.shutdown()
        time.sleep(0.3)
        figures["orphans"] = _count_procs(marker)
    _kill_procs(marker)
    return figures


# --- scale: 100,000 background jobs ---------------------------------------------------------

def _self_rss_mib():
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def scale(server, count):
    marks = {}

    def on_result(_job, _delivery):
        on_result.done += 1
        if on_result.done in (count // 10, count):
            marks[on_result.done] = _self_rss_mib()
    on_result.done = 0
    jobs = (Job.of("reverse", f"n{i}") for i in range(count))
    with _client(server) as client:
        started = time.perf_counter()
        client.submit_many(jobs, background=True, on_result=on_result, collect=False)
        submit_s = time.perf_counter() - started
    pools = [runworkers(server, {}, 4, name=f"drain{i}") for i in range(2)]
    try:
        started = time.perf_counter()
        with AdminClient([parse_address(server.address)]) as admin:
            while sum(r.queued + r.running for r in admin.status()
                      if r.function == "reverse") > 0:
                time.sleep(0.1)
        drain_s = time.perf_counter() - started
        worker_rss = max(worker_peak_rss_mib(p.pid) for p in pools)
    finally:
        for pool in pools:
            pool.stop()
    return {"submit_jobs_s": _rate(count, submit_s), "drain_jobs_s": _rate(count, drain_s),
            "client_rss_10pct": marks.get(count // 10), "client_rss_100pct": marks.get(count),
            "worker_rss": worker_rss}


def median_range(values):
    return statistics.median(values), min(values), max(values)


# --- one 16 MB payload through the wire layer ------------------------------------------------

BIG = 16 * 1024 * 1024


def _echo_thread(worker):
    import threading

    def work():
        try:
            worker.work()
        except Exception:  # the raw library ends its loop with ServerUnavailable at teardown
            pass
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def big_ours(server):
    from gearman_frame.wire import WireClient, WireWorker
    worker = WireWorker([server.address])
    worker.register_task("big_echo", lambda _w, job: job.data)
    thread = _echo_thread(worker)
    payload = b"x" * BIG
    started = time.perf_counter()
    request = WireClient([server.address]).submit("big_echo", payload, timeout=120)
    elapsed = time.perf_counter() - started
    worker.stop()
    thread.join(5)
    assert request.result == payload, "16 MB: payload changed"
    return {"seconds": elapsed}


def big_raw(server):
    worker = python3_gearman.GearmanWorker([server.address])
    worker.register_task("raw_big_echo", lambda _w, job: job.data)
    _echo_thread(worker)
    payload = "x" * BIG
    started = time.perf_counter()
    request = _raw_client(server).submit_job("raw_big_echo", payload, poll_timeout=300)
    elapsed = time.perf_counter() - started
    assert request.complete and request.result == payload, "16 MB baseline: payload changed"
    return {"seconds": elapsed}
