"""Files that hold job data: owner-only, whatever the umask, and written whole.

Dumps, the outbox, spooled dead letters and the worker's state can all hold job
arguments (passwords, tokens), so their folders are 0700 and their files 0600.
"""
from __future__ import annotations

import fcntl
import os

FOLDER_MODE = 0o700
FILE_MODE = 0o600


def private_folder(path: str | os.PathLike) -> str:
    """Create ``path`` and every missing parent owner-only (``os.makedirs`` gives parents
    the umask's mode); an existing folder is left as it is (it may be shared on purpose).
    Returns ``path``."""
    path = os.fspath(path)
    missing = []
    folder = os.path.abspath(path)
    while not os.path.isdir(folder):
        missing.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, FOLDER_MODE)
        except FileExistsError:
            if not os.path.isdir(folder):
                raise
    return path


def open_private(path: str, flags: int) -> int:
    """``os.open`` creating the file 0600 (a umask can only narrow that)."""
    return os.open(path, flags | os.O_CLOEXEC, FILE_MODE)


def ensure_private_file(path: str) -> None:
    """Create ``path`` empty and owner-only (its folder too) if it is not there, whatever
    the umask, so a library that opens it later (SQLite) never makes it readable."""
    private_folder(os.path.dirname(os.path.abspath(path)))
    if not os.path.exists(path):
        os.close(open_private(path, os.O_WRONLY | os.O_CREAT))


def write_private_file(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a synced temporary file renamed into place,
    then the folder synced, so a crash leaves the old file or the new one, never half."""
    folder = os.path.dirname(path) or "."
    temporary = f"{path}.{os.getpid()}.tmp"
    fd = open_private(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink(temporary)
        raise
    os.close(fd)
    os.replace(temporary, path)
    sync_folder(folder)


def sync_folder(folder: str) -> None:
    """fsync a folder, so a rename or a new file in it survives a crash."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileLock:
    """An exclusive ``flock`` on a lock file, held until ``release`` (or the process
    ends: the kernel drops it, so a killed holder never leaves a stale lock)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, blocking: bool = False) -> bool:
        """True if this process now holds the lock; False if another one does."""
        fd = open_private(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
