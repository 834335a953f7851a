"""Workflows and caps: what a chain step costs against a plain job, a chord of 1,000
members from submit to callback, and a capped function's throughput against its cap
(every run with the ledger on SQLite, which workflows and caps need)."""
import time

from gearman_frame.workflows import chain, chord, group, signature
from send_job_client import Job

from . import workloads as w
from .processes import runworkers, wait_workers

#: A capped function for the throughput run: each job 0.2 s, at most CAP at once.
JOB_SECONDS, CAP = 0.2, 4


def chain_step(server, url, steps):
    """ms per step of a chain of ``steps`` no-op task steps, and ms per job of as many
    plain foreground jobs sent one after another (same worker, same ledger)."""
    with runworkers(server, {}, 4, store=url), w._client(server, store=url) as client:
        wait_workers(server, "reverse", 4)
        client.submit_workflow(chain(signature("reverse", "warm"), signature("reverse")))
        started = time.perf_counter()
        for i in range(steps):
            client.submit("reverse", f"job-{i}")
        plain = (time.perf_counter() - started) / steps
        flow = chain(signature("reverse", "abc"),
                     *(signature("reverse") for _ in range(steps - 1)))
        started = time.perf_counter()
        result = client.submit_workflow(flow, timeout=300)
        per_step = (time.perf_counter() - started) / steps
        assert result.ok, result.error
        return {"step_ms": per_step * 1000, "plain_ms": plain * 1000}


def chord_time(server, url, members):
    """Seconds from submit to the callback's result for a chord of ``members`` no-op
    task members, and for as many plain jobs sent with submit_many (many in flight)."""
    functions = {"done": {"command": ["true"]}}
    with runworkers(server, functions, 4, store=url), \
            w._client(server, store=url) as client:
        wait_workers(server, "reverse", 4)
        started = time.perf_counter()
        client.submit_many([Job.of("reverse", f"m{i}") for i in range(members)])
        plain = time.perf_counter() - started
        flow = chord(group(signature("reverse", f"m{i}") for i in range(members)),
                     signature("done"))
        started = time.perf_counter()
        result = client.submit_workflow(flow, timeout=600)
        elapsed = time.perf_counter() - started
        assert result.ok, result.error
        return {"chord_s": elapsed, "plain_s": plain}


def capped(server, url, jobs):
    """jobs/s of a function with ``concurrency: CAP`` whose jobs take JOB_SECONDS, run by
    two processes of 4 threads (8 threads for 4 slots)."""
    functions = {"capped": {"command": ["sleep", str(JOB_SECONDS)], "concurrency": CAP}}
    with runworkers(server, functions, 4, store=url, processes=2), \
            w._client(server, store=url) as client:
        wait_workers(server, "reverse", 8)
        started = time.perf_counter()
        results = client.submit_many([Job.of("capped") for _ in range(jobs)])
        elapsed = time.perf_counter() - started
        assert all(r.ok for r in results), "capped: a job failed"
        return {"jobs_s": jobs / elapsed}


def rows(table, server, folder, reps, quick):
    """Add the workflows' rows to ``table``."""
    steps, members, jobs = (20, 200, 40) if quick else (50, 1000, 120)
    url = f"sqlite:///{folder}/workflows.sqlite"
    runs = [chain_step(server, url, steps) for _ in range(reps)]
    table.add(f"Workflows: a chain of {steps} no-op task steps vs as many plain foreground "
              "jobs one after another (ledger on SQLite)", "ms per step (lower is better)",
              [r["step_ms"] for r in runs], [r["plain_ms"] for r in runs], "report",
              higher_is_better=False)
    runs = [chord_time(server, url, members) for _ in range(reps)]
    table.add(f"Workflows: a chord of {members} no-op members, submit to callback, vs "
              f"{members} plain jobs in flight", "seconds (lower is better)",
              [r["chord_s"] for r in runs], [r["plain_s"] for r in runs], "report",
              higher_is_better=False)
    bound = CAP / JOB_SECONDS
    runs = [capped(server, url, jobs) for _ in range(reps)]
    table.add(f"Caps: {jobs} jobs of {JOB_SECONDS} s, concurrency {CAP}, 8 threads, vs the "
              f"cap's bound ({CAP} / {JOB_SECONDS} s)", "jobs/s", [r["jobs_s"] for r in runs],
              [bound] * reps, ">= 0.8")
