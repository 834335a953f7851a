"""`sendjob result`, `status` and `results`: what became of jobs, read from the job ledger
(store.url: any host's jobs) and this host's result store, or asked of the servers while
a job is queued or running."""
import datetime
import json
import sys
import time

from gearman_frame.delays import parse_duration
from gearman_frame.envelope import dumps
from gearman_frame.errors import EXIT_FAILED, EXIT_OK, FrameError, UsageError, WireError
from gearman_frame.sending.ledger_results import LedgerResults
from gearman_frame.wire import status_by_unique

from send_job_client.lookup import print_result


def cmd_result(client, args):
    deadline = time.monotonic() + args.wait
    while True:
        stored = client.result_store.get(args.id)
        left = deadline - time.monotonic()
        if stored is not None or left <= 0:
            break
        if client.config.client.results:
            client.collect_results(wait=min(left, 1.0))
        elif client.config.store.on:  # the worker records it in the ledger
            time.sleep(min(left, 0.2))
        else:
            break
    if stored is None:
        raise FrameError(f"job {args.id}: not finished (no result in "
                         f"{client.result_store.path}"
                         + (f" after {args.wait:g}s" if args.wait else "") + ")")
    result = stored.result
    if args.json:
        sys.stdout.buffer.write(dumps(stored.to_dict()) + b"\n")
    else:
        print_result(result.to_dict(), False)
    return EXIT_OK if result.ok else EXIT_FAILED


def cmd_status(client, args):
    state = job_state(client, args.id)
    if args.json:
        print(json.dumps(state))
    else:
        print(" ".join(f"{key}={value}" for key, value in state.items()))
    return EXIT_OK


def job_state(client, job_id):
    """done (from the job ledger: its outcome is the truth, even while a copy or its dead
    letter still sits in a queue), else queued / running (with progress) at a server,
    else done (from this host's store), else unknown."""
    store = client.result_store
    if isinstance(store, LedgerResults):
        ended = store.get(job_id)
        if ended is not None:
            return {"id": job_id, "state": "done", "status": ended.status, "runs": ended.runs}
    for server in client.config.servers:
        try:
            known = status_by_unique(server, [job_id], 5.0).get(job_id)
        except WireError:
            continue
        if known is not None and known.known:
            state = {"id": job_id, "state": "running" if known.running else "queued",
                     "server": str(server)}
            if known.running and known.denominator:
                state["progress"] = f"{known.numerator}/{known.denominator}"
            return state
    stored = store.get(job_id)
    if stored is not None:
        return {"id": job_id, "state": "done", "status": stored.status, "runs": stored.runs}
    running = store.running(job_id) if isinstance(store, LedgerResults) else None
    if running is not None:  # claimed by a worker whose server this host cannot see
        return {"id": job_id, "state": "running", "host": running.host,
                "worker": running.worker}
    return {"id": job_id, "state": "unknown"}


def cmd_results(client, args):
    if args.follow:
        for result in client.results(follow=True, wait=None):
            _show_listed(result.to_dict(), args.json)
        return EXIT_OK
    since = None if args.since is None else time.time() - parse_since(args.since)
    for stored in reversed(client.result_store.find(args.function, args.failed, since)):
        _show_listed(stored.to_dict(), args.json)
    return EXIT_OK


def _show_listed(record, as_json):
    if as_json:
        sys.stdout.buffer.write(dumps(record) + b"\n")
    else:
        print(f"{record.get('id')}\t{record.get('function') or '-'}\t{record.get('status')}"
              f"\t{record.get('error') or ''}")
    sys.stdout.flush()


def parse_since(text):
    """Seconds before now: a number, a duration (30s, 10m, 2h, 7d) or an ISO 8601 time."""
    try:
        return parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError as err:
        raise UsageError(f"--since {text!r}: expected seconds, a duration (30m, 2h, 7d) or "
                         "an ISO 8601 time") from err
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return max(0.0, time.time() - moment.timestamp())
