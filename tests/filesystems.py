"""Small and read-only filesystems for fault tests: a tmpfs the test mounts (as root), or,
where mounting is not allowed, a file-size limit (RLIMIT_FSIZE) on the child process."""
import contextlib
import os
import resource
import subprocess


def can_mount():
    return os.geteuid() == 0


@contextlib.contextmanager
def small_filesystem(folder, size):
    """Yield ``(folder, preexec_fn)``: writes under ``folder`` by a child started with
    ``preexec_fn`` fail once about ``size`` bytes are used (ENOSPC on a tmpfs of that
    size, EFBIG past a file-size limit of that size)."""
    folder.mkdir(parents=True, exist_ok=True)
    if not can_mount():
        def limit():
            resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        yield folder, limit
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                    str(folder)], check=True)
    try:
        yield folder, None
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@contextlib.contextmanager
def read_only_later(folder):
    """Yield a function that makes ``folder`` read-only for this user: a tmpfs remounted
    read-only (as root, whom file modes do not stop), else mode 0500."""
    folder.mkdir(parents=True, exist_ok=True)
    if not can_mount():
        yield lambda: os.chmod(folder, 0o500)
        os.chmod(folder, 0o700)
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(folder)],
                   check=True)
    try:
        yield lambda: subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
