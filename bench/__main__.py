"""`python -m bench`: gearman-frame against its baselines, measured side by side.

Starts its own gearmand on a free loopback port, runs each workload for gearman-frame and
its baseline alternately for several repetitions, prints a table of medians with their
min-max and the ratio gearman-frame / baseline, and writes it to bench/RESULTS.md.
"""
import argparse
import datetime
import os
import platform
import sys
import tempfile

from gearman_frame.daemons.gearmand import find_gearmand

from . import workloads as w
from .processes import start_gearmand, start_tls_front

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
PEERS_RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "PEERS.md")
#: A worker process's memory budget (peak RSS, MiB): typed, readable code over a few
#: hundred KiB of lazy imports (the architecture issue).
WORKER_RSS_MIB = 24
FLEET_RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "FLEET.md")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--quick", action="store_true",
                        help="smaller workloads, 1 repetition (a smoke run)")
    parser.add_argument("--no-scale", action="store_true", help="skip the 100,000-job run")
    parser.add_argument("--fleet", action="store_true",
                        help="only the fleet on one machine (hosts in network namespaces; "
                             "needs root): throughput and a server host partitioned")
    parser.add_argument("--peers", action="store_true",
                        help="only gearman-frame against Celery+Redis, RQ and C libgearman "
                             "(GF_PEERS=1 bash scripts/setup.sh installs them)")
    parser.add_argument("--only", choices=["batch", "ledger", "tracing", "workflows"],
                        help="run one workload: batch (a batch task against a plain one), "
                             "ledger (store.url on SQLite and PostgreSQL against off), "
                             "tracing (every job traced against tracing off), workflows "
                             "(chain steps, a chord, a capped function)")
    return parser


class Table:
    def __init__(self):
        self.rows = []

    def add(self, workload, metric, ours, base=None, target="", higher_is_better=True,
            check=None):
        o = w.median_range(ours)
        b = w.median_range(base) if base else None
        ratio = o[0] / b[0] if b and b[0] else None
        if check is None and ratio is not None and target and target != "report":
            limit = float(target.split()[-1])
            check = ratio >= limit if higher_is_better else ratio <= limit
        self.rows.append([workload, metric, _fmt(o), _fmt(b) if b else "-",
                          f"{ratio:.2f}" if ratio is not None else "-", target,
                          "-" if check is None else ("yes" if check else "NO")])

    def markdown(self):
        head = ["workload", "metric", "gearman-frame median [min-max]",
                "baseline median [min-max]", "ratio", "target", "met"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


def _fmt(stats):
    median, low, high = stats
    digits = 0 if median >= 100 else 2
    return f"{median:.{digits}f} [{low:.{digits}f}-{high:.{digits}f}]"


def _paired(reps, base, other):
    """jobs/s of ``base(rep)`` and ``other(rep)``, run alternately ``reps`` times."""
    firsts, seconds = [], []
    for rep in range(reps):
        firsts.append(base(rep)["jobs_s"])
        seconds.append(other(rep)["jobs_s"])
    return firsts, seconds


def run(args):
    reps = 1 if args.quick else args.reps
    n1, n2, n3, n4 = (500, 200, 200, 5) if args.quick else (5000, 1000, 1000, 20)
    n_scale = 10000 if args.quick else 100000
    table = Table()
    with tempfile.TemporaryDirectory(prefix="gf-bench-") as folder:
        server = start_gearmand(folder)
        try:
            if args.only in (None, "ledger"):
                from . import ledger
                ledger.rows(table, server, folder, reps, args.quick, _paired)
            if args.only == "ledger":
                return table
            if args.only in (None, "workflows"):
                from . import workflows
                workflows.rows(table, server, folder, reps, args.quick)
            if args.only == "workflows":
                return table
            if args.only in (None, "tracing"):
                from . import tracing
                tracing.rows(table, server, folder, reps, args.quick, _paired)
            if args.only == "tracing":
                return table
            n_batch = 2000 if args.quick else 10000
            plain, batched = _paired(
                reps, lambda rep: w.batch_store(server, n_batch, "store_one", folder),
                lambda rep: w.batch_store(server, n_batch, "store_batch", folder))
            table.add(f"Batches: {n_batch} one-number jobs, a `batch: {{max: 100}}` task vs "
                      "a plain task (1 thread each)", "jobs/s", batched, plain, "report")
            if args.only == "batch":
                return table

            for threads in (1, 4):
                ours, base, rss = [], [], []
                for _ in range(reps):
                    a = w.w1_ours(server, threads, n1)
                    b = w.w1_raw(server, threads, n1)
                    ours.append(a["jobs_s"]), base.append(b["jobs_s"])
                    rss.append((a["rss"], b["rss"]))
                table.add(f"W1 {n1} no-op Python jobs, {threads} thread(s)", "jobs/s",
                          ours, base, ">= 1.0")
                if threads == 4:
                    table.add("Memory: worker, 4 threads, through W1", "peak RSS MiB",
                              [r[0] for r in rss], [r[1] for r in rss], f"<= {WORKER_RSS_MIB} MiB",
                              check=max(r[0] for r in rss) <= WORKER_RSS_MIB)
            rates = w.w1_background(server, n1 * reps, "bench")
            table.add(f"W1 results: {n1 * reps} background no-op jobs a side, 1 thread, a "
                      "result channel vs none, alternating blocks of 500",
                      "jobs/s (of the blocks)", rates["channel"], rates["plain"], ">= 0.8")
            lookup = w.store_lookup(folder)
            table.add("Result store: `sendjob result ID` with 100,000 records (a whole "
                      "process)", "p50 ms (baseline: `python -c 'import sqlite3, json'`)",
                      [lookup["p50_ms"]], [lookup["floor_p50_ms"]], "< 50 ms",
                      check=lookup["p50_ms"] < 50)
            key_file = w.new_key_file(folder)
            rates = w.w1_pair(server, n1 * reps, key_file=key_file)
            table.add(f"W1 signed: {n1 * reps} no-op jobs a side, signed vs unsigned "
                      "through one worker thread with a key, alternating blocks of 500",
                      "jobs/s (of the blocks)",
                      rates["other"], rates["plain"], ">= 0.9")
            front, ca = start_tls_front(os.path.join(folder, "tls"), server)
            try:
                p50s = w.w2_pair(server, server, n2 * reps, key_file=key_file)
                extra = (w.median_range(p50s["other"])[0] - w.median_range(p50s["plain"])[0])
                table.add(f"W2 signed: {n2 * reps} sequential jobs a side, signed vs unsigned "
                          "through one worker thread with a key, alternating blocks of 100",
                          "p50 ms (of the blocks' p50s)", p50s["other"], p50s["plain"],
                          f"{extra:+.3f} ms <= +0.05 ms", higher_is_better=False,
                          check=extra <= 0.05)
                plain, tls = _paired(reps, lambda rep: w.w1_ours(server, 1, n1),
                                     lambda rep: w.w1_ours(front, 1, n1, tls_ca=ca))
                table.add(f"W1 TLS: {n1} no-op jobs, 1 thread, tls:// (stunnel) vs plain TCP",
                          "jobs/s", tls, plain, "report")
                p50s = w.w2_pair(server, front, n2 * reps, tls_ca=ca)
                table.add(f"W2 TLS: {n2 * reps} sequential jobs a side, tls:// (stunnel) vs "
                          "plain TCP", "p50 ms (of the blocks' p50s)", p50s["other"],
                          p50s["plain"], "report", higher_is_better=False, check=None)
            finally:
                front.stop()
            lat = w.w2(server, n2 * reps)
            table.add(f"W2 {n2 * reps} sequential foreground jobs a side, alternating blocks "
                      "of 100", "p50 ms (of the blocks' p50s)", lat["ours_p50"],
                      lat["raw_p50"], "<= 1.15", higher_is_better=False)
            table.add("W2", "p99 ms", [lat["ours_p99"]], [lat["raw_p99"]])
            rates = w.w1_pair(server, n1 * reps, metrics=True)
            table.add(f"W1 metrics: {n1 * reps} no-op jobs a side, 1 thread, --metrics vs "
                      "none, alternating blocks of 500", "jobs/s (of the blocks)",
                      rates["other"], rates["plain"], ">= 0.95")
            for processes in (2, 4):
                plain, spread = _paired(
                    reps, lambda rep: w.w1_raw(server, processes, n1),
                    lambda rep: w.w1_ours(server, 1, n1, processes=processes))
                table.add(f"W1 {n1} no-op Python jobs, {processes} processes of 1 thread vs "
                          f"the raw library, {processes} threads", "jobs/s", spread, plain,
                          ">= 1.0")
            figures = w.w3(server, 1, n3 * reps, processes=4)
            table.add(f"W3 {n3 * reps} `true` jobs a side, `runworkers --processes 4 "
                      "--threads 1` vs four gearman -w", "jobs/s (of the blocks)",
                      figures["ours"], figures["c"], ">= 1.0")
            table.add("Memory: supervisor + 4 worker processes vs four gearman -w",
                      "PSS MiB, summed", [figures["pss"]], [figures["c_pss"]], "report",
                      higher_is_better=False, check=None)
            simple = w.w3(server, 1, n3 * reps, processes=4, env={"GEARMAN_FRAME_SPAWN": "os"})
            table.add(f"W3 {n3 * reps} `true` jobs a side, `--processes 4 --threads 1`, "
                      "os.posix_spawn (holds the GIL) vs four gearman -w",
                      "jobs/s (of the blocks)", simple["ours"], simple["c"], "report")
            for threads in (1, 4):
                figures = w.w3(server, threads, n3 * reps)
                table.add(f"W3 {n3 * reps} `true` jobs a side, {threads} worker(s) vs "
                          "gearman -w, alternating blocks", "jobs/s (of the blocks)",
                          figures["ours"], figures["c"], ">= 1.0" if threads == 4 else "")
                table.add(f"W3 floor: a raw-protocol Python loop, {threads} thread(s), no "
                          "capture, timeout, hygiene or envelope", "jobs/s (of the blocks)",
                          figures["floor"], figures["c"])
                if threads == 4:
                    table.add("Memory: worker, 4 threads, through W3", "peak RSS MiB",
                              [figures["rss"]], target=f"<= {WORKER_RSS_MIB} MiB",
                              check=figures["rss"] <= WORKER_RSS_MIB)
                    measured = w.w3(server, 4, n3 * reps, metrics=True)
                    table.add(f"W3 metrics: {n3 * reps} `true` jobs, 4 threads, --metrics vs "
                              "none (each as a share of its blocks' gearman -w rate)",
                              "share of gearman -w",
                              [o / c for o, c in zip(measured["ours"], measured["c"])],
                              [o / c for o, c in zip(figures["ours"], figures["c"])],
                              ">= 0.95")
            ours, base = w.w4_ours(server, n4), w.w4_raw(server, n4)
            table.add(f"W4 {n4} hung `sh -c 'sleep & sleep'`, 0.5 s timeout",
                      "ms to see the timeout, p50", [ours["p50_ms"]], [base["p50_ms"]],
                      "<= 520 ms", check=ours["p50_ms"] <= 520)
            table.add("W4", "ms to see the timeout, p99", [ours["p99_ms"]], [base["p99_ms"]])
            table.add("W4", "processes left", [ours["orphans"]], [base["orphans"]], "0",
                      check=ours["orphans"] == 0)
            if not args.no_scale:
                s = w.scale(server, n_scale)
                table.add(f"Scale {n_scale} background jobs", "submit jobs/s",
                          [s["submit_jobs_s"]])
                table.add(f"Scale {n_scale} background jobs", "drain jobs/s (2 x 4 threads)",
                          [s["drain_jobs_s"]])
                table.add("Scale", "client RSS MiB at 10% / 100%",
                          [s["client_rss_100pct"]], [s["client_rss_10pct"]], "flat",
                          check=s["client_rss_100pct"] - s["client_rss_10pct"] < 20)
                table.add("Scale", "worker peak RSS MiB", [s["worker_rss"]], target=f"<= {WORKER_RSS_MIB} MiB",
                          check=s["worker_rss"] <= WORKER_RSS_MIB)
            # last: its baseline leaves this process holding copies of 16 MB strings
            ours = [w.big_ours(server)["seconds"] for _ in range(reps)]
            base = [w.big_raw(server)["seconds"]] if not args.quick else None
            table.add("16 MB payload round trip (wire layer)", "seconds", ours, base,
                      "< 1 s", check=max(ours) < 1.0)
        finally:
            server.stop()
    return table


def compile_sources():
    """Byte-compile the project first, as a regular install is: where
    PYTHONDONTWRITEBYTECODE is set (or the sources changed since), every process the
    benchmark starts would compile its modules again and the start-up rows would
    measure the compiler."""
    import compileall
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for package in ("gearman_frame", "send_job_client", "worker_client", "manage_client",
                    "plugins", "bench"):
        compileall.compile_dir(os.path.join(root, package), quiet=2)


def main(argv=None):
    args = build_parser().parse_args(argv)
    compile_sources()
    if not find_gearmand():
        print("bench: gearmand is not installed (bash scripts/setup.sh installs it)",
              file=sys.stderr)
        return 3
    if args.peers:
        from . import peers
        text = ("# gearman-frame, Celery, RQ, Dramatiq, Huey and C libgearman\n\nThe same "
                "workloads in one "
                f"run, {os.cpu_count()} cores, Python {platform.python_version()}, "
                f"{datetime.datetime.now():%Y-%m-%d %H:%M}. Ratios: gearman-frame's "
                "throughput over the other's, or the other's latency over gearman-frame's "
                "(above 1: gearman-frame is ahead).\n\n" + peers.markdown(peers.run(args.quick))
                + "\n")
        print(text)
        if not args.quick:
            with open(PEERS_RESULTS, "w") as handle:
                handle.write(text)
        return 0
    if args.fleet:
        from . import fleet
        text = ("# Fleet benchmark\n\n3 gearmand hosts, 4 worker hosts (2 threads each), 2 "
                "sender hosts, each a network namespace; all share this machine's "
                f"{os.cpu_count()} cores (a correctness and recovery figure, not scaling). "
                "The servers run as `runadmin server start` does: SQLite queue, so every "
                "background job is written to disk and deleted again (what makes background "
                "jobs durable, and slower than foreground ones here). "
                f"Last run: {datetime.datetime.now():%Y-%m-%d %H:%M}.\n\n"
                + fleet.markdown(fleet.run(500 if args.quick else 2000)) + "\n")
        print(text)
        if not args.quick:
            with open(FLEET_RESULTS, "w") as handle:
                handle.write(text)
        return 0
    table = run(args)
    header = (f"# Benchmark results\n\nLast run: {datetime.datetime.now():%Y-%m-%d %H:%M}, "
              f"{os.cpu_count()} cores, Python {platform.python_version()}, "
              f"{'quick' if args.quick else f'{args.reps} repetitions'}.\n"
              "Baselines: raw python3-gearman (W1, W2, W4, memory, 16 MB once), the C "
              "`gearman -w` CLI (W3; the W3 floor rows set bench/floor_worker.py, a Python worker "
              "with none of the features, against it). Celery, RQ and a C client and worker: "
              "bench/PEERS.md (`--peers`); the fleet in network namespaces: bench/FLEET.md "
              "(`--fleet`).\nIn the scale rows the baseline column holds the client's RSS at 10% "
              "of the jobs.\n\n")
    text = header + table.markdown() + "\n"
    print(text)
    if not args.quick and not args.only:  # only a whole run replaces the results file
        with open(RESULTS, "w") as handle:
            handle.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
