"""Streaming a running command's output to a sender that follows it (``sendjob run
--follow``): WORK_WARNING packets (``1`` or ``2``, then bytes of stdout or stderr), at
most one per stream every ``INTERVAL`` seconds and at most ``CHUNK_LIMIT`` bytes each: a
command that writes faster has its stream thinned (the skipped bytes are counted and
said), never the worker slowed. The job's result still carries the output as usual."""
import time

#: Seconds between two pieces of one job's stream, at the least.
INTERVAL = 0.1
#: Largest piece sent; what a stream wrote beyond it in one interval is skipped.
CHUNK_LIMIT = 64 * 1024


class Follower:
    """Collects a command's output as it is read and sends it in paced pieces."""

    def __init__(self, wire_worker, job):
        self.wire_worker = wire_worker
        self.job = job
        self.pending = {1: bytearray(), 2: bytearray()}
        self.skipped = {1: 0, 2: 0}
        self.sent_at = 0.0
        self.lost = False

    def add(self, stream, chunk):
        """A chunk the command wrote (called in the job's thread as the pipes are read)."""
        buffer = self.pending[stream]
        buffer += chunk
        if len(buffer) > CHUNK_LIMIT:
            self.skipped[stream] += len(buffer) - CHUNK_LIMIT
            del buffer[:len(buffer) - CHUNK_LIMIT]
        if time.monotonic() - self.sent_at >= INTERVAL:
            self.flush()

    def flush(self):
        """Send what waits (also called on each tick and at the end)."""
        self.sent_at = time.monotonic()
        for stream, buffer in self.pending.items():
            if self.skipped[stream]:
                note = f"\n[... {self.skipped[stream]} bytes skipped ...]\n".encode()
                buffer[:0] = note
                self.skipped[stream] = 0
            if buffer and not self.lost:
                self.lost = not self.wire_worker.send_output(
                    self.job, str(stream).encode() + bytes(buffer))
            buffer.clear()
