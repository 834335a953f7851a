"""store_numbers: many senders' numbers stored in files, at most 5 per file (a batch task).

A storage service from our users' history: clients send numbers one per job, from many
hosts at once; the service stores them in files of at most 5 numbers, and 1 and 2 must
never be in the same file. ``sendjob plugin store_numbers --upto 23 --dir out`` sends
the numbers 1..23 (a job each); the worker's batch task gets up to 5 queued jobs at once
(whatever any sender queued within 2 s), splits the batch so 1 and 2 land in different
files, writes each file, and tells every job which file holds its number. Each job is
retried up to 3 times (``functions.store_numbers`` in config.yaml); in the worker, the
hooks log every retry, each success and roll a final failure back; the sender logs each
job's file. ``--flaky`` makes each number's first store fail, to show the retries.
"""
import logging
import os
import time

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
    """on_success: runs in the worker once a number is stored for good."""
    log.info("save %s success (%s)", job.kwargs["number"], result.value["file"])


def _roll_back(job, result):
    """on_failure: a number failed every attempt; leave no marker behind."""
    marker = _marker(job.kwargs)
    if os.path.exists(marker):
        os.remove(marker)
    log.warning("save %s failed for good: %s", job.kwargs["number"], result.error)


def _retrying(job, result):
    """on_retry: after each failed attempt that will be tried again."""
    log.info("save %s: attempt %d failed (%s), retrying", job.kwargs["number"],
             result.attempts, result.error)


def _marker(kwargs):
    return os.path.join(kwargs["dir"], f".tried-{kwargs['number']}")


@task("store_numbers", batch={"max": BATCH_SIZE, "wait": 2.0}, on_success=_stored,
      on_failure=_roll_back, on_retry=_retrying)
def store_numbers(jobs):
    """Store the numbers of up to 5 jobs (each: ``number``, ``dir``, ``flaky``) in files
    of their folder; return, per job, the file that holds its number (or the error)."""
    outcomes = [None] * len(jobs)
    ready = {}
    for index, job in enumerate(jobs):
        kwargs = job.kwargs
        os.makedirs(kwargs["dir"], exist_ok=True)
        if kwargs.get("flaky") and not os.path.exists(_marker(kwargs)):
            open(_marker(kwargs), "w").close()
            outcomes[index] = OSError(f"simulated failure storing {kwargs['number']} "
                                      "(first try)")
            continue
        ready.setdefault(kwargs["dir"], {})[index] = kwargs["number"]
    for folder, numbers in ready.items():
        by_number = {}
        for index, number in numbers.items():
            by_number.setdefault(number, []).append(index)
        for group in batches(list(dict.fromkeys(numbers.values()))):
            path = os.path.join(folder, f"batch-{time.time_ns()}-{os.urandom(3).hex()}.txt")
            tmp = f"{path}.tmp"
            with open(tmp, "w") as handle:
                handle.write("".join(f"{n}\n" for n in group))
            os.replace(tmp, path)
            for number in group:
                for index in by_number[number]:
                    outcomes[index] = {"file": path, "number": number}
                    marker = _marker(jobs[index].kwargs)
                    if os.path.exists(marker):
                        os.remove(marker)
    return outcomes


def add_arguments(parser):
    parser.add_argument("--upto", type=int, default=12, help="store the numbers 1..UPTO")
    parser.add_argument("--dir", default="var/numbers", help="folder for the batch files")
    parser.add_argument("--flaky", action="store_true", help="fail each store once first")


def jobs(args, config):
    folder = os.path.abspath(args.dir)
    for number in range(1, args.upto + 1):
        yield Job.of("store_numbers", number=number, dir=folder, flaky=args.flaky)


def on_result(job, result):
    if result.ok:
        log.info("stored %s in %s (after %d attempt(s))", job.kwargs["number"],
                 os.path.basename(result.value["file"]), result.attempts)
    else:
        log.error("storing %s failed after %d attempt(s): %s", job.kwargs["number"],
                  result.attempts, result.error)
