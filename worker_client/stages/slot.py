"""A capped function's job in a worker thread (see worker_client.caps): before it runs,
the thread's slots for other functions go back and a rate-limited job waits for the
start it books. Once its answer is queued, the wire layer looks again at what the thread
may take and tells gearmand before it asks for another job; the thread keeps the slot of
the function it serves."""
from __future__ import annotations

from gearman_frame.envelope import Result

from .base import Run, Stage


class Slot(Stage):
    """See the module docstring; a thread without caps (``run.wire.caps`` None) skips it."""

    def before(self, run: Run) -> Result | None:
        caps = getattr(run.wire, "caps", None)
        if caps is not None:
            caps.started(run.function)
        return None
