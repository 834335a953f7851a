"""`python -m bench --peers`: the same workloads through gearman-frame, Celery (Redis
broker and result backend), RQ, Dramatiq, Huey (bench/peer_queues.py) and a C client and
worker on libgearman, in one run.

W1: no-op Python jobs, many in flight, one worker (1 thread / `-c 1` / 1 RQ worker).
W2: sequential foreground latency (a result awaited per job).
W3: one `true` command per job, 4 workers.
W4: a hung `sh -c 'sleep & sleep'` with a 0.5 s timeout: time until the sender sees the
timeout, and processes left behind (RQ's timeouts are whole seconds: 1 s there).
The C client and worker (bench/c/gearman_bench.c, built here against Debian's
libgearman-dev) give W1 and W2 a ceiling: how far the Python side is from C.
Needs the `peers` extras (celery[redis], rq, dramatiq[redis], huey) and Debian's redis-server and
libgearman-dev; the bench starts its own redis-server on a free loopback port.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

from gearman_frame.daemons.gearmand import free_port
from send_job_client import Job

from . import peer_queues as q
from . import workloads as w
from .processes import BIN, Proc, runworkers, start_gearmand, wait_workers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def missing() -> str | None:
    for module in ("celery", "rq", "redis", "dramatiq", "huey"):
        try:
            __import__(module)
        except ImportError:
            return f"the Python package '{module}' (pip install -e '.[peers]')"
    for tool in ("redis-server", "cc"):
        if shutil.which(tool) is None:
            return f"'{tool}' (apt-get install redis-server gcc)"
    if not os.path.exists("/usr/include/libgearman/gearman.h"):
        return "libgearman's headers (apt-get install libgearman-dev)"
    return None


def _env(url):
    return {**os.environ, "PYTHONPATH": REPO, "GF_REDIS_URL": url}


def start_redis():
    port = free_port()
    proc = Proc(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no"])
    import redis
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return proc, f"redis://127.0.0.1:{port}/0"
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def build_c(folder):
    binary = os.path.join(folder, "gearman_bench")
    subprocess.run(["cc", "-O2", "-o", binary, os.path.join(REPO, "bench", "c",
                                                              "gearman_bench.c"), "-lgearman"],
                   check=True)
    return binary


# --- Celery ---------------------------------------------------------------------------------

def celery_worker(url, concurrency):
    return Proc([os.path.join(BIN, "celery"), "-A", "bench.peer_tasks", "worker", "-P",
                 "prefork", "-c", str(concurrency), "--loglevel", "ERROR", "--without-gossip",
                 "--without-mingle", "--without-heartbeat"], env=_env(url))


def _celery(url):
    os.environ["GF_REDIS_URL"] = url
    from . import peer_tasks
    peer_tasks.app.conf.broker_url = peer_tasks.app.conf.result_backend = url
    return peer_tasks


def celery_w1(url, count):
    tasks = _celery(url)
    with celery_worker(url, 1):
        tasks.celery_noop.delay("warm").get(timeout=60)
        started = time.perf_counter()
        pending = [tasks.celery_noop.delay(f"job-{i}") for i in range(count)]
        for result in pending:
            result.get(timeout=300)
        return w._rate(count, time.perf_counter() - started)


def celery_w2(url, count):
    tasks = _celery(url)
    with celery_worker(url, 1):
        tasks.celery_noop.delay("warm").get(timeout=60)
        return w._latencies(lambda: tasks.celery_noop.delay("x").get(timeout=60), count)


def celery_w3(url, count):
    tasks = _celery(url)
    with celery_worker(url, 4):
        tasks.celery_true.delay().get(timeout=60)
        started = time.perf_counter()
        pending = [tasks.celery_true.delay() for _ in range(count)]
        for result in pending:
            result.get(timeout=300)
        return w._rate(count, time.perf_counter() - started)


def celery_w4(url, count):
    tasks = _celery(url)
    return q.hung_commands(celery_worker(url, 4),
                           lambda: tasks.celery_noop.delay("warm").get(timeout=60),
                           lambda marker: tasks.celery_hang.delay(marker).get(timeout=60),
                           "sleep 10.71", count)


# --- RQ ---------------------------------------------------------------------------------

def _queue(url):
    import redis
    from rq import Queue
    return Queue("gfpeers", connection=redis.Redis.from_url(url))


def rq_workers(url, count, burst):
    argv = [os.path.join(BIN, "rq"), "worker", "gfpeers", "--url", url, "--path", REPO,
            "--quiet"] + (["--burst"] if burst else [])
    return [Proc(argv, env=_env(url)) for _ in range(count)]


def _rq_drain(url, function, count, workers, args=()):
    """Queue ``count`` jobs, then time ``workers`` burst workers until the queue is done."""
    queue = _queue(url)
    jobs = [queue.enqueue(function, *args) for _ in range(count)]
    started = time.perf_counter()
    procs = rq_workers(url, workers, burst=True)
    for proc in procs:
        proc.proc.wait(600)
    elapsed = time.perf_counter() - started
    assert all(job.get_status(refresh=True) == "finished" for job in jobs[:20])
    return w._rate(count, elapsed)


def rq_w2(url, count):
    from .rq_tasks import noop
    queue = _queue(url)
    procs = rq_workers(url, 1, burst=False)
    try:
        def one():
            job = queue.enqueue(noop, "x")
            while job.get_status(refresh=True) not in ("finished", "failed"):
                time.sleep(0.001)
        one()
        return w._latencies(one, count)
    finally:
        for proc in procs:
            proc.stop()


def rq_w4(url, count):
    from .rq_tasks import hang
    marker = "sleep 10.81"
    queue = _queue(url)
    procs = rq_workers(url, 4, burst=False)
    try:
        def one():
            job = queue.enqueue(hang, marker, job_timeout=1)
            while job.get_status(refresh=True) not in ("finished", "failed"):
                time.sleep(0.002)
        figures = w._latencies(one, count)
        time.sleep(0.3)
        figures["orphans"] = w._count_procs(marker)
    finally:
        for proc in procs:
            proc.stop()
    w._kill_procs(marker)
    return figures


# --- gearman-frame and the C ceiling ----------------------------------------------------------

def ours_w2(server, count):
    with runworkers(server, {}, 1), w._client(server) as client:
        wait_workers(server, "reverse", 1)
        client.submit("reverse", "warm")
        return w._latencies(lambda: client.submit("reverse", "x"), count)


def ours_w3(server, count):
    with runworkers(server, {"true": {"command": ["true"]}}, 4), w._client(server) as client:
        wait_workers(server, "true", 4)
        client.submit_many([Job.of("true") for _ in range(20)])
        started = time.perf_counter()
        results = client.submit_many([Job.of("true") for _ in range(count)])
        elapsed = time.perf_counter() - started
        assert all(r.ok for r in results)
        return w._rate(count, elapsed)


def c_figures(binary, server, w1_count, w2_count):
    with Proc([binary, "worker", str(server.port), "c_echo"]):
        wait_workers(server, "c_echo", 1)
        rate = float(subprocess.run([binary, "w1", str(server.port), "c_echo", str(w1_count)],
                                    capture_output=True, text=True, check=True).stdout)
        p50, p99 = map(float, subprocess.run([binary, "w2", str(server.port), "c_echo",
                                              str(w2_count)], capture_output=True, text=True,
                                             check=True).stdout.split())
    return rate, p50, p99


def run(quick=False):
    """Rows of (workload, metric, gearman-frame, celery, rq, dramatiq, huey, c) figures."""
    why = missing()
    if why:
        raise SystemExit(f"bench --peers needs {why}")
    n1, n2, n3, n4 = (300, 100, 200, 5) if quick else (2000, 500, 1000, 10)
    rows = []
    with tempfile.TemporaryDirectory(prefix="gf-peers-") as folder:
        server = start_gearmand(folder)
        redis_proc, url = start_redis()
        try:
            binary = build_c(folder)
            from .rq_tasks import noop, true_command
            ours1 = w.w1_ours(server, 1, n1)["jobs_s"]
            c_rate, c_p50, c_p99 = c_figures(binary, server, n1, n2)
            rows.append((f"W1 {n1} no-op jobs, 1 worker", "jobs/s", ours1,
                         celery_w1(url, n1), _rq_drain(url, noop, n1, 1, ("x",)),
                         q.dramatiq_rate(url, "noop", n1, ("x",)),
                         q.huey_rate(url, "noop", n1, ("x",)), c_rate))
            ours2 = ours_w2(server, n2)
            celery2, rq2 = celery_w2(url, n2), rq_w2(url, n2)
            dramatiq2, huey2 = q.dramatiq_w2(url, n2), q.huey_w2(url, n2)
            rows.append((f"W2 {n2} sequential jobs", "p50 ms", ours2["p50_ms"],
                         celery2["p50_ms"], rq2["p50_ms"], dramatiq2["p50_ms"],
                         huey2["p50_ms"], c_p50))
            rows.append(("W2", "p99 ms", ours2["p99_ms"], celery2["p99_ms"], rq2["p99_ms"],
                         dramatiq2["p99_ms"], huey2["p99_ms"], c_p99))
            rows.append((f"W3 {n3} `true` jobs, 4 workers", "jobs/s", ours_w3(server, n3),
                         celery_w3(url, n3), _rq_drain(url, true_command, n3, 4),
                         q.dramatiq_rate(url, "true_command", n3),
                         q.huey_rate(url, "true_command", n3), None))
            ours4, celery4, rq4 = w.w4_ours(server, n4), celery_w4(url, n4), rq_w4(url, n4)
            dramatiq4 = q.dramatiq_w4(url, n4)
            rows.append((f"W4 {n4} hung commands, 0.5 s timeout (RQ: 1 s, its least)",
                         "ms to see it, p50", ours4["p50_ms"], celery4["p50_ms"],
                         rq4["p50_ms"], dramatiq4["p50_ms"], None, None))
            rows.append(("W4", "processes left", ours4["orphans"], celery4["orphans"],
                         rq4["orphans"], dramatiq4["orphans"], None, None))
        finally:
            redis_proc.stop()
            server.stop()
    return rows


def markdown(rows):
    def fmt(value):
        if value is None:
            return "-"
        return f"{value:.0f}" if value >= 100 else f"{value:.2f}"

    def ratio(ours, other, lower_better):
        if not other or not ours:
            return "-"
        return f"{(other / ours if lower_better else ours / other):.2f}x"
    lines = ["| workload | metric | gearman-frame | Celery+Redis | RQ | Dramatiq | Huey | "
             "C libgearman | vs Celery | vs RQ | vs Dramatiq | vs Huey | of C |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, metric, ours, celery, rq, dramatiq, huey, c in rows:
        lower = "ms" in metric or "left" in metric
        lines.append(f"| {name} | {metric} | {fmt(ours)} | {fmt(celery)} | {fmt(rq)} | "
                     f"{fmt(dramatiq)} | {fmt(huey)} | {fmt(c)} | "
                     f"{ratio(ours, celery, lower)} | {ratio(ours, rq, lower)} | "
                     f"{ratio(ours, dramatiq, lower)} | {ratio(ours, huey, lower)} | "
                     f"{ratio(ours, c, lower)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(run("--quick" in sys.argv)))
