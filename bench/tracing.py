"""Tracing's cost: W1 and W2 with every job traced (sampled 1.0, spans to a console
exporter's file, in the sender and the worker) against tracing off, in one run."""
from . import workloads as w


def rows(table, server, folder, reps, quick, paired):
    """Add the tracing rows to ``table``."""
    n1 = 500 if quick else 5000
    spans = {"exporter": "console", "file": f"{folder}/spans.jsonl", "sample_ratio": 1.0}
    plain, traced = paired(reps, lambda rep: w.w1_ours(server, 4, n1),
                           lambda rep: w.w1_ours(server, 4, n1, tracing=spans))
    table.add(f"Tracing W1: {n1} no-op jobs, 4 threads, every job traced (sample 1.0, a "
              "console exporter to a file) vs off", "jobs/s", traced, plain, ">= 0.8")
    tenth = {**spans, "sample_ratio": 0.1}
    plain, sampled = paired(reps, lambda rep: w.w1_ours(server, 4, n1),
                            lambda rep: w.w1_ours(server, 4, n1, tracing=tenth))
    table.add(f"Tracing W1: {n1} no-op jobs, 4 threads, one job in ten traced (sample "
              "0.1) vs off", "jobs/s", sampled, plain, "report", check=None)
    lat = w.w2_pair(server, server, n1 // 5 * reps, tracing=spans)
    table.add("Tracing W2: sequential jobs, traced vs off, alternating blocks",
              "p50 ms (of the blocks' p50s)", lat["other"], lat["plain"], "report",
              higher_is_better=False, check=None)
