"""The job ledger's cost: W1 and a background drain with the ledger on SQLite and on
PostgreSQL against none, in one run (each job is one claim and one outcome written)."""
import time

from gearman_frame.addresses import parse_address
from gearman_frame.daemons.gearmand import free_port
from gearman_frame.daemons.postgres import PostgresCluster
from manage_client.admin import AdminClient
from send_job_client import Job

from . import workloads as w
from .processes import runworkers, wait_workers


def drain(server, count, store=None, threads=4):
    """``count`` background no-op jobs queued with no worker, then one worker of
    ``threads`` threads: jobs/s from the moment it serves to an empty queue."""
    with w._client(server) as client:
        client.submit_many((Job.of("reverse", f"d{i}") for i in range(count)),
                           background=True, collect=False)
    with runworkers(server, {}, threads, store=store), \
            AdminClient([parse_address(server.address)]) as admin:
        def left():
            return sum(r.queued for r in admin.status() if r.function == "reverse")
        wait_workers(server, "reverse", threads)
        started, first = time.perf_counter(), left()
        while left() > 0:
            time.sleep(0.02)
        return {"jobs_s": w._rate(first, time.perf_counter() - started)}


def rows(table, server, folder, reps, quick, paired):
    """Add the ledger's rows to ``table``."""
    n1, n_drain = (500, 2000) if quick else (5000, 20000)
    cluster = PostgresCluster(free_port()).start()
    try:
        stores = {"SQLite": f"sqlite:///{folder}/ledger.sqlite", "PostgreSQL": cluster.url}
        targets = {"SQLite": ">= 0.7", "PostgreSQL": ">= 0.5"}
        for name, url in stores.items():
            plain, ledger = paired(reps, lambda rep: w.w1_ours(server, 4, n1),
                                   lambda rep: w.w1_ours(server, 4, n1, store=url))
            table.add(f"Ledger W1: {n1} no-op jobs, 4 threads, store.url on {name} vs off",
                      "jobs/s", ledger, plain, targets[name])
            plain, ledger = paired(reps, lambda rep: drain(server, n_drain),
                                   lambda rep: drain(server, n_drain, store=url))
            table.add(f"Ledger drain: {n_drain} background no-op jobs, 4 threads, store.url "
                      f"on {name} vs off", "jobs/s", ledger, plain, targets[name])
            lat = w.w2_pair(server, server, n1 // 5 * reps, store=url)
            table.add(f"Ledger W2: sequential jobs, store.url on {name} vs off, alternating "
                      "blocks", "p50 ms (of the blocks' p50s)", lat["other"], lat["plain"],
                      "report", higher_is_better=False, check=None)
    finally:
        cluster.destroy()
