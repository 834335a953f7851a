"""`runadmin dead`: read what waits in the dead-letter queues without taking it away.

gearmand cannot show a queued job's data, so each ``__dead__.FUNCTION`` queue is drained
into an owner-only dump file (as `runadmin clear` does: nothing is held only in memory),
its jobs are queued again exactly as they were (same function, unique and bytes), and the
file is removed once every one is back. If one could not go back, the file stays and the
error names it: `runadmin resend` on it restores the original jobs, and a line-for-line
copy of it is what was read."""
from __future__ import annotations

import os

from gearman_frame.envelope import loads, parse_request
from gearman_frame.errors import EnvelopeError, FrameError
from gearman_frame.files import private_folder
from gearman_frame.queues import DEAD_PREFIX, read_dead_letter, requeues_of

from .drain import Drainer, resend_jobs

#: Folder (beside the config) for the dump of a dead-letter queue being read.
PEEK_DIR = "var/dead-peek"


def dead_functions(status_rows, function=None) -> list[str]:
    """The dead-letter queues holding jobs (of ``function`` only, when given)."""
    wanted = None if function is None else DEAD_PREFIX + function
    return sorted({r.function for r in status_rows if r.function.startswith(DEAD_PREFIX)
                   and r.queued and (wanted is None or r.function == wanted)})


def read_queue(config, queue, timeout=60.0) -> list[dict]:
    """The dead letters of ``queue`` (``__dead__.F``), decoded, left queued."""
    folder = config.resolve(PEEK_DIR)
    private_folder(folder)
    dump = os.path.join(folder, f"{queue}.{os.getpid()}.jsonl")
    report = Drainer(config.servers, queue, dump,
                     client_id=f"runadmin-dead.{os.getpid()}").run(timeout=timeout)
    records: list[dict] = []
    with open(dump, "rb") as handle:
        for line in handle:
            record = loads(line) if line.strip() else None
            if isinstance(record, dict):
                records.append(record)
    back = resend_jobs(config, [{"function": r["function"], "unique": r["unique"],
                                 "data": bytes(r["data"]), "priority": r["priority"],
                                 "background": True} for r in records],
                       unsent_path=dump + ".unsent")
    if report.failure is not None or back.unsent:
        raise FrameError(f"dead {queue}: {len(back.unsent)} of {len(records)} dead letter(s) "
                         f"could not be queued again ({back.reasons() or report.failure}); "
                         f"they are in {dump}: `runadmin resend {dump}` sends the original "
                         "jobs again")
    os.unlink(dump)
    return [describe(r["data"]) for r in records]


def describe(payload) -> dict:
    """A dead letter's fields as `runadmin dead` shows them."""
    try:
        letter = read_dead_letter(payload)
    except EnvelopeError as err:
        return {"function": None, "job_id": None, "status": None,
                "reason": f"not a dead-letter record: {err}"}
    result: dict = letter["result"] if isinstance(letter.get("result"), dict) else {}
    data = letter["data"] if isinstance(letter["data"], bytes) else b""
    try:
        request, _raw = parse_request(data)
    except EnvelopeError:
        request = None
    return {"function": letter["function"],
            "job_id": request.id if request else requeues_of(letter["unique"])[0],
            "requeues": letter.get("requeues", 0),
            "args": list(request.args) if request else None,
            "kwargs": request.kwargs if request else None,
            "raw_bytes": None if request else len(data),
            "status": result.get("status"), "reason": result.get("error"),
            "exit_code": result.get("exit_code"), "attempts": result.get("attempts"),
            "worker": result.get("worker"), "dead_at": letter.get("dead_at")}
