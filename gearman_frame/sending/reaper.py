"""The reaper: background jobs whose gearmand host was lost for good are sent again.

Senders record each background job in the ledger as a server queues it (``gf_sent``). A
job with no outcome and no live claim (never claimed, or its holder died) within
``store.requeue_after`` of its time is looked for at the server that took it: one that still holds it (a backlog, a held delayed job) keeps it; an
unreachable one, or one that no longer knows it, has lost it, and it is sent to a live
server. Each pass first looks for workflows whose next step went missing
(workflow_reaper). The worker's claim makes a second copy harmless (a job that did run is answered
from the ledger), so the reaper never has to be sure. It runs inside ``sendjob
scheduler`` (the active one) and as ``runadmin reaper`` (one pass). It lives in the core
because both roles run it.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from ..addresses import parse_address
from ..errors import ProtocolError, WireError
from ..wire import status_by_unique
from ..ledger.flows import Flows
from .dispatch import Dispatcher, Job, Outcome
from .workflow_reaper import carry_on

log = logging.getLogger(__name__)

#: Seconds a status question or a resubmission may take per server.
TIMEOUT = 5.0
#: Jobs looked at per pass.
LIMIT = 5000


@dataclass
class ReapReport:
    """What one pass did."""

    #: Jobs sent again to a live server.
    resent: int = 0
    #: Jobs their server still holds (left with it).
    held: int = 0
    #: Jobs that could not be sent (no live server took them): tried again next pass.
    waiting: int = 0
    #: Servers that did not answer.
    unreachable: tuple[str, ...] = ()
    #: Workflow steps found never sent on (recorded: sent once due).
    carried: int = 0

    def describe(self) -> str:
        down = f"; unreachable: {', '.join(self.unreachable)}" if self.unreachable else ""
        steps = (f"; {self.carried} workflow step(s) found never sent on"
                 if self.carried else "")
        return (f"reaper: {self.resent} job(s) sent again, {self.held} still held by their "
                f"server, {self.waiting} waiting for a live server{down}{steps}")


class Reaper:
    """One ledger's reaper for ``config``'s servers (see the module docstring)."""

    def __init__(self, config: Any, ledger: Any) -> None:
        self.config, self.ledger = config, ledger

    def run_once(self) -> ReapReport:
        report = ReapReport()
        report.carried = carry_on(Flows(self.ledger), self.config.store.requeue_after)
        rows = self.ledger.unclaimed(self.config.store.requeue_after, LIMIT)
        by_server: dict[str | None, list[tuple]] = {}
        for row in rows:
            by_server.setdefault(row[2], []).append(row)
        lost: list[tuple] = []
        down: list[str] = []
        for server, group in by_server.items():
            try:
                known = (status_by_unique(parse_address(server), [r[0] for r in group],
                                          TIMEOUT) if server else {})
            except ProtocolError:  # a server without GET_STATUS_UNIQUE cannot say
                known = {}
            except (WireError, ValueError):
                known = {}
                down.append(str(server))
            for row in group:
                status = known.get(row[0])
                if status is not None and status.known:
                    report.held += 1
                else:
                    lost.append(row)
        report.unreachable = tuple(down)
        if lost:
            report.resent, report.waiting = self._send(lost, set(down))
        if report.resent or report.waiting or down or report.carried:
            log.warning("%s", report.describe())
        return report

    def _send(self, rows: list[tuple], down: set[str]) -> tuple[int, int]:
        live = [s for s in self.config.servers if str(s) not in down]
        if not live:
            return 0, len(rows)
        jobs = [Job(function, data=payload, background=True, id=job_id)
                for job_id, function, _server, payload, _due in rows]
        done: list[Outcome] = []
        dispatcher = Dispatcher(live, TIMEOUT, 1, signer=self.config.keyring)
        try:
            dispatcher.run(jobs, lambda _i, outcome: done.append(outcome))
        finally:
            dispatcher.close()
        sent = [o for o in done if o.error is None]
        for outcome in sent:
            log.info("reaper: job %s on %s sent again to %s", outcome.job.id,
                     outcome.job.function, outcome.server)
        self.ledger.record_sent([(o.job.id, o.job.function, o.server, o.job.data or b"",
                                  time.time()) for o in sent])
        return len(sent), len(rows) - len(sent)
