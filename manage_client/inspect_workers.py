"""`runadmin inspect`: ask each worker process for its live state on its control
function, all at once, and show what came back within a deadline."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor, wait

from gearman_frame.errors import FrameError
from gearman_frame.logs import printable
from gearman_frame.queues import CONTROL_CANCEL, CONTROL_INSPECT, control_function

from gearman_frame.wire.admin_protocol import worker_name_of
from .drain import send_control

#: Seconds `inspect` waits for the answers by default.
INSPECT_WAIT = 5.0
#: Most control jobs in flight at once.
PARALLEL = 32


def worker_processes(connections, names=()) -> list[str]:
    """The gearman-frame worker processes connected (each has a control connection
    ``PROCESS.ctl`` serving ``__ctl__.PROCESS``), of the workers ``names`` (all if empty)."""
    found = set()
    for conn in connections:
        if not conn.client_id.endswith(".ctl"):
            continue
        process = conn.client_id[:-len(".ctl")]
        if control_function(process) not in conn.functions:
            continue
        if not names or worker_name_of(conn.client_id) in names:
            found.add(process)
    return sorted(found)


def inspect(config, processes, timeout=INSPECT_WAIT) -> list[dict]:
    """Each process's answer (decoded), or ``{"process": P, "error": why}``."""
    def ask(process):
        answer = send_control(config.servers, process, CONTROL_INSPECT, config.keyring,
                              timeout=timeout)
        return json.loads(bytes(answer))
    answers = {}
    with ThreadPoolExecutor(max_workers=min(PARALLEL, max(1, len(processes)))) as pool:
        futures = {pool.submit(ask, p): p for p in processes}
        done, _late = wait(futures, timeout=timeout + 1)
        for future, process in futures.items():
            if future not in done:
                answers[process] = {"process": process,
                                    "error": f"no answer within {timeout:g}s"}
                continue
            try:
                answers[process] = future.result()
            except (FrameError, ValueError) as err:
                answers[process] = {"process": process, "error": str(err)}
    return [answers[p] for p in processes]


def render(answers) -> str:
    """The answers as text: a line per process, then its running jobs and counters."""
    lines = []
    for state in answers:
        name = printable(state.get("process", "?"))
        if "error" in state:
            lines.append(f"{name}: {printable(state['error'])}")
            continue
        lines.append(f"{name}: pid {state['pid']} on {printable(state['host'])}, up "
                     f"{state['uptime_s']:g}s, {state['rss_mib']:g} MiB, {state['threads']} "
                     f"threads, config {state['config_hash']}, version {state['version']}"
                     + (f", recycling ({state['recycling']})" if state.get("recycling")
                        else ""))
        for job in state["running"]:
            pid = f"pid {job['pid']}" if job.get("pid") else "in-process"
            lines.append(f"  running {printable(job['function'])} {printable(job['job_id'])} "
                         f"{pid} attempt {job['attempt']}: {job['elapsed_s']:.1f}s of "
                         f"{job['timeout']:g}s" + _progress(job.get("progress")))
        durations = state.get("durations_s", {})
        for function, counts in sorted(state["counters"].items()):
            shown = " ".join(f"{k}={v}" for k, v in counts.items() if v)
            spread = durations.get(function)
            if spread:
                shown += (f"  p50 {spread['p50']:.3f}s p90 {spread['p90']:.3f}s "
                          f"p99 {spread['p99']:.3f}s")
            lines.append(f"  {printable(function)}: {shown or 'nothing yet'}")
        if state.get("slots"):
            lines.append("  slots held: " + ", ".join(
                f"{printable(f)} {n}" for f, n in sorted(state["slots"].items())))
    return "\n".join(lines)


def _progress(reported) -> str:
    """`, progress 3/10 (30%)` for a job that reported some; empty otherwise."""
    if not reported or reported[1] <= 0:
        return ""
    done, total = reported
    return f", progress {done}/{total} ({100 * done // total}%)"


def cancel_running(config, connections, job_id) -> tuple[str, str]:
    """Find the worker process running ``job_id`` (inspect) and have it stop the job;
    ``(process, its answer)``. FrameError "not found" if no process runs it."""
    for state in inspect(config, worker_processes(connections)):
        if any(job.get("job_id") == job_id for job in state.get("running", ())):
            answer = send_control(config.servers, state["process"],
                                  CONTROL_CANCEL + b" " + job_id.encode(), config.keyring)
            return state["process"], bytes(answer).decode("utf-8", "replace")
    raise FrameError(f"cancel {job_id}: not found (no worker runs it; a queued job is "
                     "cancelled by its gearmand handle, see `runadmin jobs`)")
