"""A command's output through pipes, kept up to a bound and discarded past it.

Output that went to files grew on disk as fast as a command could write (500 MB held in
a shared temp folder until the thread's next command), and reading it back grew memory.
Through a pipe the worker reads as the command writes: it keeps the first or the last
``limit`` bytes of each stream, counts the rest and drops it, so a command that floods
never blocks and never costs more than its limit.

Each thread keeps two descriptor numbers for the write ends (``ThreadPipes``); a new
pipe's write end is moved onto them for each command, so the spawn's file actions (which
name those numbers) are built once per thread. Between commands they point to
/dev/null, and every descriptor here is close-on-exec, so no other child inherits one.
"""
from __future__ import annotations

import fcntl
import os
import select
import tempfile

#: Bytes read from a pipe at a time.
READ_CHUNK = 64 * 1024
#: Chunks read from one pipe per wake-up while the command runs, and when draining it.
READS_PER_WAKE = 16
DRAIN_READS = 64
_POLL_IN = select.POLLIN | select.POLLHUP | select.POLLERR


class Capture:
    """One stream's kept bytes: the first ``limit`` (``head``) or the last ``limit``."""

    __slots__ = ("limit", "head", "kept", "size", "listener")

    def __init__(self, limit: int, head: bool = False, listener=None):
        self.limit = limit
        self.head = head
        self.kept = bytearray()
        self.size = 0
        #: called with each chunk as it is read (a followed job's stream), or None
        self.listener = listener

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.listener is not None:
            self.listener(chunk)
        if self.head:
            room = self.limit - len(self.kept)
            if room > 0:
                self.kept += chunk[:room]
            return
        self.kept += chunk
        if len(self.kept) > self.limit:
            del self.kept[:len(self.kept) - self.limit]

    def value(self) -> bytes:
        return bytes(self.kept)


class ThreadPipes:
    """The two fixed write-end descriptors of one thread (see the module docstring)."""

    def __init__(self, null: int):
        """``null``: a descriptor of /dev/null the caller keeps open."""
        self.null = null
        self.targets = (os.dup(null), os.dup(null))  # dup: close-on-exec

    def open(self) -> list[int]:
        """New pipes for stdout and stderr; their write ends now sit on ``targets``.
        Returns the read ends (non-blocking)."""
        reads = []
        try:
            for target in self.targets:
                read_end, write_end = os.pipe2(os.O_CLOEXEC)
                reads.append(read_end)
                fcntl.fcntl(read_end, fcntl.F_SETFL, os.O_NONBLOCK)  # one call: no F_GETFL
                os.dup2(write_end, target, inheritable=False)
                os.close(write_end)
        except OSError:
            self.close_write_ends()
            for fd in reads:
                os.close(fd)
            raise
        return reads

    def close_write_ends(self) -> None:
        """Point the targets back at /dev/null, closing our copies of the write ends, so a
        pipe reaches EOF once the command's processes are gone."""
        for target in self.targets:
            os.dup2(self.null, target, inheritable=False)


class Pump:
    """Reads a command's pipes into their Captures while waiting for it to exit."""

    def __init__(self, reads: list[int], captures: list[Capture]):
        self.poller = select.poll()
        self.captures = captures
        self.streams = dict(zip(reads, captures))
        for fd in reads:
            self.poller.register(fd, _POLL_IN)

    def watch(self, fd: int) -> None:
        """Also wake for ``fd`` (the command's pidfd: readable once it exited)."""
        self.poller.register(fd, select.POLLIN)

    def wait(self, timeout_ms: int) -> list[int]:
        """Poll up to ``timeout_ms`` (-1: forever); read what is there; return the other
        descriptors that are ready."""
        try:
            events = self.poller.poll(timeout_ms)
        except InterruptedError:
            return []
        ready = []
        for fd, _mask in events:
            if fd in self.streams:
                self._read(fd)
            else:
                ready.append(fd)
        return ready

    def drain(self) -> None:
        """Read whatever the pipes still hold, without waiting."""
        for fd in list(self.streams):
            self._read(fd, until_empty=True)

    def _read(self, fd, until_empty=False):
        """Read up to READS_PER_WAKE chunks (DRAIN_READS when draining): a command that
        writes as fast as we read must not keep us from its deadline."""
        capture = self.streams[fd]
        for _ in range(DRAIN_READS if until_empty else READS_PER_WAKE):
            try:
                chunk = os.read(fd, READ_CHUNK)
            except BlockingIOError:
                return
            if not chunk:  # EOF: every writer is gone
                self.poller.unregister(fd)
                os.close(fd)
                del self.streams[fd]
                return
            capture.add(chunk)
            if len(chunk) < READ_CHUNK:
                return

    def close(self) -> None:
        for fd in self.streams:
            os.close(fd)
        self.streams.clear()


def anonymous_file(folder=None):
    """An unnamed temporary file (O_TMPFILE: nothing to clean up, even after a SIGKILL) in
    ``folder`` (default: $TMPDIR or /tmp); a tempfile one where the filesystem lacks
    O_TMPFILE."""
    folder = folder or os.environ.get("TMPDIR") or "/tmp"
    try:
        return open(os.open(folder, os.O_TMPFILE | os.O_RDWR, 0o600), "w+b")
    except (OSError, AttributeError):
        return tempfile.TemporaryFile(prefix="gf-", dir=folder)


def file_tail(handle, limit):
    """The last ``limit`` bytes of a file written by a command, and its size."""
    fd = handle.fileno()
    size = os.fstat(fd).st_size
    if not size:
        return b"", 0
    offset = max(0, size - limit)
    chunks = []
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks), size
