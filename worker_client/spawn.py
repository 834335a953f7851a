"""Start a command with posix_spawn(3) without holding the GIL.

``os.posix_spawn`` keeps the GIL while glibc creates the child, and glibc's posix_spawn
waits until the child has exec'ed (CLONE_VFORK). On a busy machine that exec takes most of
a short job's time, and every other worker thread waits for the GIL meanwhile: measured
under 4 threads running `true`, 85% of the GIL's held time was inside ``os.posix_spawn``.
ctypes releases the GIL around a foreign call, so here the threads spawn in parallel.

The child starts in a new session, with SIGPIPE and SIGXFSZ back to their default action
(Python ignores them, and an ignored signal is inherited across exec; subprocess restores
them too) and an empty signal mask. Falls back to ``os.posix_spawn`` where libc lacks the
calls (``spawn()`` has the same signature either way).
"""
import ctypes
import os
import signal
import threading

POSIX_SPAWN_SETSIGDEF = 0x04
POSIX_SPAWN_SETSIGMASK = 0x08
POSIX_SPAWN_SETSID = 0x80  # glibc >= 2.26
#: Generous sizes for glibc's opaque types (posix_spawnattr_t is 336 bytes,
#: posix_spawn_file_actions_t 80, sigset_t 128 on x86-64).
_ATTR_BYTES = 1024
_ACTIONS_BYTES = 512
_SIGSET_BYTES = 256
#: Signals Python ignores that a command must get with their default action.
RESTORED_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)


class _Libc:
    """The libc calls, and one spawn attribute object shared by every call (posix_spawn
    only reads it)."""

    def __init__(self):
        libc = ctypes.CDLL(None, use_errno=True)
        self.spawn = libc.posix_spawn  # a CDLL call: the GIL is released
        self.spawn.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.c_char_p, ctypes.c_void_p,
                               ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        quick = ctypes.PyDLL(None)  # calls that never block keep the GIL (no handoff)
        self.actions_init = quick.posix_spawn_file_actions_init
        self.actions_destroy = quick.posix_spawn_file_actions_destroy
        self.add_dup2 = quick.posix_spawn_file_actions_adddup2
        self.add_dup2.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        self.attr = ctypes.create_string_buffer(_ATTR_BYTES)
        self._sigdefault = ctypes.create_string_buffer(_SIGSET_BYTES)
        self._sigmask = ctypes.create_string_buffer(_SIGSET_BYTES)
        checks = [libc.posix_spawnattr_init(self.attr),
                  libc.sigemptyset(self._sigdefault), libc.sigemptyset(self._sigmask)]
        checks += [libc.sigaddset(self._sigdefault, int(sig)) for sig in RESTORED_SIGNALS]
        checks += [libc.posix_spawnattr_setflags(
                       self.attr, ctypes.c_short(POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF
                                                 | POSIX_SPAWN_SETSIGMASK)),
                   libc.posix_spawnattr_setsigdefault(self.attr, self._sigdefault),
                   libc.posix_spawnattr_setsigmask(self.attr, self._sigmask)]
        if any(checks):
            raise OSError(f"posix_spawn attributes could not be set up: {checks}")


_libc = None
_libc_lock = threading.Lock()
#: Encoded ``KEY=VALUE`` entries by (key, value): a command's environment is mostly the
#: worker's own, so most entries are encoded once (cleared when it fills up).
_entries = {}
_ENTRIES_MAX = 128


def _entry(item):
    key = os.fsencode(item[0])
    if not key or b"=" in key:
        raise ValueError(f"illegal environment variable name {item[0]!r}")
    encoded = key + b"=" + os.fsencode(item[1])
    if b"\0" in encoded:
        raise ValueError(f"embedded null byte in environment variable {item[0]!r}")
    if len(_entries) >= _ENTRIES_MAX:
        _entries.clear()
    _entries[item] = encoded
    return encoded


def _load():
    global _libc
    with _libc_lock:
        if _libc is None:
            try:
                _libc = _Libc()
            except (OSError, AttributeError):
                _libc = False
    return _libc


def spawn(path, argv, env, dup2=()):
    """Start ``path`` with ``argv`` and ``env`` (a dict) in a new session; ``dup2`` is a
    list of (fd, target) pairs. Return the pid; raise OSError if it cannot run."""
    libc = _libc if _libc is not None else _load()
    if not libc:
        return os.posix_spawn(path, argv, env, setsid=True, setsigdef=RESTORED_SIGNALS,
                              file_actions=[(os.POSIX_SPAWN_DUP2, fd, target)
                                            for fd, target in dup2])
    args = [os.fsencode(arg) for arg in argv]
    entries = [_entries.get(item) or _entry(item) for item in env.items()]
    if any(b"\0" in arg for arg in args):  # (entries are checked once, when encoded)
        raise ValueError("embedded null byte in a command's argument")
    c_argv = (ctypes.c_char_p * (len(args) + 1))(*args, None)
    c_env = (ctypes.c_char_p * (len(entries) + 1))(*entries, None)
    actions = ctypes.create_string_buffer(_ACTIONS_BYTES)
    pid = ctypes.c_int()
    libc.actions_init(actions)
    try:
        for fd, target in dup2:
            error = libc.add_dup2(actions, fd, target)
            if error:
                raise OSError(error, f"cannot pass descriptor {fd}: {os.strerror(error)}")
        error = libc.spawn(ctypes.byref(pid), os.fsencode(path), actions, libc.attr,
                           c_argv, c_env)
    finally:
        libc.actions_destroy(actions)
    if error:
        raise OSError(error, os.strerror(error), path)
    return pid.value
