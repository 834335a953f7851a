"""store_numbers: store numbers in files, in batches of at most 5 per file.

A batch job from our users' history: ``sendjob plugin store_numbers --upto 23 --dir out``
writes the numbers 1..23 into files ``out/batch-NNN.txt``, at most 5 numbers per file,
and 1 and 2 never in the same file. Each store is retried up to 3 times (see
``functions.store_numbers`` in config.yaml); in the worker, the task's hooks log every
retry, each success ("save [...] success") and roll a final failure back (no partial
file is left); the sender logs each success and failure. ``--flaky`` makes every store
fail once first, to show the retries at work.
"""
import logging
import os

from gearman_frame.tasks import task
from send_job_client import Job

log = logging.getLogger(__name__)

BATCH_SIZE = 5
#: Numbers that must never be stored in the same file.
APART = (1, 2)


def batches(numbers, size=BATCH_SIZE, apart=APART):
    """Split ``numbers`` into lists of at most ``size`` where the ``apart`` numbers land in
    different lists (each starts its own batch; the rest fill up in order)."""
    present = [n for n in apart if n in numbers]
    groups = [[n] for n in present]
    rest = [n for n in numbers if n not in present]
    for number in rest:
        open_groups = [g for g in groups if len(g) < size]
        if open_groups:
            open_groups[0].append(number)
        else:
            groups.append([number])
    return groups


def _stored(job, result):
    """on_success: runs in the worker once the store is done for good."""
    log.info("save %s success (%s)", job.kwargs["numbers"], job.kwargs["path"])


def _roll_back(job, result):
    """on_failure: the store failed every attempt; leave no partial file behind."""
    path = job.kwargs["path"]
    for leftover in (f"{path}.tmp", f"{path}.tried"):
        if os.path.exists(leftover):
            os.remove(leftover)
    log.warning("save %s failed for good (%s): rolled back %s", job.kwargs["numbers"],
                result.error, path)


def _retrying(job, result):
    """on_retry: after each failed attempt that will be tried again."""
    log.info("save %s: attempt %d failed (%s), retrying", job.kwargs["numbers"],
             result.attempts, result.error)


@task("store_numbers", on_success=_stored, on_failure=_roll_back, on_retry=_retrying)
def store_numbers(numbers, path, flaky=False):
    """Write ``numbers`` to ``path``, one per line; with ``flaky``, fail the first try."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    marker = f"{path}.tried"
    if flaky and not os.path.exists(marker):
        open(marker, "w").close()
        raise OSError(f"simulated failure storing {path} (first try)")
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        handle.write("".join(f"{n}\n" for n in numbers))
    os.replace(tmp, path)
    if flaky:
        os.remove(marker)
    return {"path": path, "count": len(numbers)}


def add_arguments(parser):
    parser.add_argument("--upto", type=int, default=12, help="store the numbers 1..UPTO")
    parser.add_argument("--dir", default="var/numbers", help="folder for the batch files")
    parser.add_argument("--flaky", action="store_true", help="fail each store once first")


def jobs(args, config):
    folder = os.path.abspath(args.dir)
    for index, batch in enumerate(batches(list(range(1, args.upto + 1)))):
        path = os.path.join(folder, f"batch-{index:03d}.txt")
        yield Job.of("store_numbers", numbers=batch, path=path, flaky=args.flaky)


def on_result(job, result):
    if result.ok:
        log.info("stored %s in %s (after %d attempt(s))", job.kwargs["numbers"],
                 job.kwargs["path"], result.attempts)
    else:
        log.error("storing %s in %s failed after %d attempt(s): %s", job.kwargs["numbers"],
                  job.kwargs["path"], result.attempts, result.error)
