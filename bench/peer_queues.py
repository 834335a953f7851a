"""Dramatiq and Huey in `python -m bench --peers`: the fastest Python queues in public
benchmarks, each with its recommended set-up on this machine (Dramatiq: its defaults, a
process per core and 8 threads each; Huey: a process worker per core), on the same
Redis as Celery and RQ. W1 and W3 send every job, then wait for every result; W2 awaits
each result before the next job; W4 (Dramatiq only: Huey has no time limit) a hung
command with a 0.5 s limit."""
from __future__ import annotations

import os
import time

from . import workloads as w
from .processes import BIN, Proc

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORES = os.cpu_count() or 1


def _env(url: str) -> dict:
    return {**os.environ, "PYTHONPATH": REPO, "GF_REDIS_URL": url}


def _with_url(url: str) -> None:
    os.environ["GF_REDIS_URL"] = url


# --- Dramatiq ---------------------------------------------------------------------------

def dramatiq_worker(url: str) -> Proc:
    return Proc([os.path.join(BIN, "dramatiq"), "bench.dramatiq_tasks", "--processes",
                 str(CORES), "--threads", "8", "--path", REPO], env=_env(url))


def _dramatiq(url: str):
    _with_url(url)
    from . import dramatiq_tasks
    return dramatiq_tasks


def _dramatiq_get(message, seconds: float = 300):
    return message.get_result(block=True, timeout=int(seconds * 1000))


def dramatiq_rate(url: str, actor_name: str, count: int, args: tuple = ()) -> float:
    tasks = _dramatiq(url)
    actor = {"noop": tasks.dramatiq_noop, "true_command": tasks.dramatiq_true}[actor_name]
    with dramatiq_worker(url):
        _dramatiq_get(actor.send(*args), 60)
        started = time.perf_counter()
        sent = [actor.send(*args) for _ in range(count)]
        for message in sent:
            _dramatiq_get(message)
        return w._rate(count, time.perf_counter() - started)


def dramatiq_w2(url: str, count: int) -> dict:
    tasks = _dramatiq(url)
    with dramatiq_worker(url):
        _dramatiq_get(tasks.dramatiq_noop.send("warm"), 60)
        return w._latencies(lambda: _dramatiq_get(tasks.dramatiq_noop.send("x"), 60), count)


def hung_commands(worker: Proc, warm, wait_hung, marker: str, count: int) -> dict:
    """W4 for a peer: with ``worker`` up and ``warm()`` answered, ``wait_hung(marker)``
    sends a hung command and waits for its end (its time limit's error counts as seen),
    ``count`` times; the latencies and the processes left behind."""
    with worker:
        warm()

        def hung() -> None:
            try:
                wait_hung(marker)
            except Exception:  # the time limit, seen as a failed result
                pass
        figures = w._latencies(hung, count)
        time.sleep(0.3)
        figures["orphans"] = w._count_procs(marker)
    w._kill_procs(marker)
    return figures


def dramatiq_w4(url: str, count: int) -> dict:
    tasks = _dramatiq(url)
    return hung_commands(dramatiq_worker(url),
                         lambda: _dramatiq_get(tasks.dramatiq_noop.send("warm"), 60),
                         lambda marker: _dramatiq_get(tasks.dramatiq_hang.send(marker), 60),
                         "sleep 10.91", count)


# --- Huey -------------------------------------------------------------------------------

def huey_worker(url: str) -> Proc:
    return Proc([os.path.join(BIN, "huey_consumer"), "bench.huey_tasks.huey", "-w",
                 str(CORES), "-k", "process", "-C"], env=_env(url))


def _huey(url: str):
    _with_url(url)
    from . import huey_tasks
    return huey_tasks


def huey_rate(url: str, task_name: str, count: int, args: tuple = ()) -> float:
    tasks = _huey(url)
    task = {"noop": tasks.huey_noop, "true_command": tasks.huey_true}[task_name]
    with huey_worker(url):
        task(*args).get(blocking=True, timeout=60)
        started = time.perf_counter()
        pending = [task(*args) for _ in range(count)]
        for result in pending:
            result.get(blocking=True, timeout=300)
        return w._rate(count, time.perf_counter() - started)


def huey_w2(url: str, count: int) -> dict:
    tasks = _huey(url)
    with huey_worker(url):
        tasks.huey_noop("warm").get(blocking=True, timeout=60)
        return w._latencies(lambda: tasks.huey_noop("x").get(blocking=True, timeout=60),
                            count)
