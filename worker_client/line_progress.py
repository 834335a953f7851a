"""Progress from a shell command's own output (``functions.NAME.progress``): stdout lines
like ``42%`` (percent), ``3/10`` (fraction), or those a configured pattern's two groups
match, become WORK_STATUS, so a sender (`sendjob run --follow`, `sendjob status`),
`runadmin inspect` and the dashboard see how far a command is. The lines stay in the
output; a line ends at ``\\n`` or ``\\r`` (tools that redraw one line use ``\\r``)."""
from __future__ import annotations

import re
import time

#: Seconds between two WORK_STATUS of one job, at the least; the last value is sent on
#: the next tick, and a finished one (done >= total) at once.
PACE = 0.1
#: A longer unfinished line is not a progress line: its bytes are dropped, not kept.
LONGEST_LINE = 4096
_ENDS = re.compile(rb"[\r\n]")


def compile_progress(pattern: str) -> tuple[re.Pattern, bool]:
    """``(regex, percent)``: a pattern of one group is a percentage (total 100)."""
    regex = re.compile(pattern)
    return regex, regex.groups == 1


class LineProgress:
    """The command's output listener: hands each chunk on to the follower (if the sender
    follows the output) and reads stdout's lines for progress."""

    def __init__(self, pattern: str, send, follower=None, note=None):
        self.regex, self.percent = compile_progress(pattern)
        #: send(done, total) -> bool (False: the job's server is gone)
        self.send, self.follower, self.note = send, follower, note
        self.partial = b""
        self.pending: tuple[int, int] | None = None
        self.sent_at = float("-inf")
        self.lost = False

    def add(self, stream: int, chunk: bytes) -> None:
        if self.follower is not None:
            self.follower.add(stream, chunk)
        if stream != 1:
            return
        lines = _ENDS.split(self.partial + chunk)
        self.partial = lines.pop()
        if len(self.partial) > LONGEST_LINE:
            self.partial = b""
        for line in lines:
            if line:
                self._read(line)

    def _read(self, line: bytes) -> None:
        match = self.regex.search(line.decode("utf-8", "replace"))
        if match is None:
            return
        try:
            if self.percent:
                done, total = min(100, max(0, int(float(match.group(1))))), 100
            else:
                done, total = int(float(match.group(1))), int(float(match.group(2)))
        except (TypeError, ValueError, OverflowError):  # a group matched no number
            return
        if done < 0 or total <= 0:
            return
        self.pending = (done, total)
        if done >= total or time.monotonic() - self.sent_at >= PACE:
            self._send()

    def flush(self) -> None:
        """Each tick and at the end: the follower's output, and the last progress read."""
        if self.follower is not None:
            self.follower.flush()
        if self.pending is not None:
            self._send()

    def _send(self) -> None:
        done, total = self.pending or (0, 0)
        self.pending, self.sent_at = None, time.monotonic()
        if self.note is not None:
            self.note(done, total)
        if not self.lost:  # once its server is gone, the rest would fail the same way
            self.lost = not self.send(done, total)
