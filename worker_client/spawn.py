"""Start a command with posix_spawn(3) without holding the GIL.

``os.posix_spawn`` keeps the GIL while glibc creates the child, and glibc's posix_spawn
waits until the child has exec'ed (CLONE_VFORK). On a busy machine that exec takes most of
a short job's time, and every other worker thread waits for the GIL meanwhile: measured
under 4 threads running `true`, 85% of the GIL's held time was inside ``os.posix_spawn``.
ctypes releases the GIL around a foreign call, so here the threads spawn in parallel.

The child starts in a new session, with SIGPIPE and SIGXFSZ back to their default action
(Python ignores them, and an ignored signal is inherited across exec; subprocess restores
them too) and an empty signal mask. Falls back to ``os.posix_spawn`` where libc lacks the
calls (``spawn()`` has the same signature either way), or when ``$GEARMAN_FRAME_SPAWN`` is
``os`` (the benchmark sets both paths side by side with it).
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
#: ``os`` here makes every spawn go through ``os.posix_spawn`` (holding the GIL).
SPAWN_VARIABLE = "GEARMAN_FRAME_SPAWN"


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


_libc: "_Libc | bool | None" = None
_libc_lock = threading.Lock()


def _entry(name, value):
    """``NAME=VALUE`` encoded for a C environment; ValueError if it cannot be one."""
    key = os.fsencode(name)
    if not key or b"=" in key:
        raise ValueError(f"illegal environment variable name {name!r}")
    encoded = key + b"=" + os.fsencode(value)
    if b"\0" in encoded:
        raise ValueError(f"embedded null byte in environment variable {name!r}")
    return encoded


_POINTER_BYTES = ctypes.sizeof(ctypes.c_char_p)
#: memmove keeping the GIL (ctypes.memmove releases it: a handoff to another thread for
#: a copy of a few hundred bytes).
_copy = ctypes.PyDLL(None).memmove
_copy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
#: Base tables kept per set of replaced names (a function's configured env replaces some).
_BASES_MAX = 32


class Environment:
    """A command environment as posix_spawn takes it: the worker's own variables encoded
    once, with each command's few (its run tag, its job id, configured ones) added or
    replacing. Encoding ~40 variables and filling a 40-pointer array for every command
    cost more than the rest of a spawn's Python."""

    def __init__(self, variables):
        self.variables = dict(variables)
        self._entries = {name: _entry(name, value) for name, value in self.variables.items()}
        self._bases = {}  # frozenset of replaced names -> (pointer table, count)

    def get(self, name, extra, default=None):
        """A variable as a command with ``extra`` sees it."""
        return extra[name] if name in extra else self.variables.get(name, default)

    def as_dict(self, extra):
        return {**self.variables, **extra}

    def _base(self, replaced):
        base = self._bases.get(replaced)
        if base is None:
            kept = [entry for name, entry in self._entries.items() if name not in replaced]
            if len(self._bases) >= _BASES_MAX:
                self._bases.clear()  # a table in use stays alive through its caller
            base = self._bases[replaced] = ((ctypes.c_char_p * len(kept))(*kept), len(kept))
        return base

    def table(self, extra):
        """A NULL-ended ``char *[]`` of the entries a command with ``extra`` gets (its
        pointers point into bytes this object and the table itself keep alive)."""
        added = [_entry(name, value) for name, value in extra.items()]
        replaced = frozenset(name for name in extra if name in self._entries)
        base, count = self._base(replaced)
        table = (ctypes.c_char_p * (count + len(added) + 1))()
        _copy(table, base, count * _POINTER_BYTES)
        table[count:count + len(added)] = added
        return table


_local = threading.local()
#: File-action sets kept per thread: a thread's commands almost always get the same
#: descriptors (its two output files and /dev/null), so the set is built once, saving
#: the libc calls (and adddup2's two getrlimit system calls each) on every spawn.
_ACTIONS_MAX = 8


def _file_actions(libc, dup2):
    """The posix_spawn file actions doing ``dup2`` (a tuple of (fd, target) pairs), from
    this thread's cache (only this thread uses or destroys its sets)."""
    cache = getattr(_local, "actions", None)
    if cache is None:
        cache = _local.actions = {}
    actions = cache.get(dup2)
    if actions is None:
        actions = ctypes.create_string_buffer(_ACTIONS_BYTES)
        libc.actions_init(actions)
        for fd, target in dup2:
            error = libc.add_dup2(actions, fd, target)
            if error:
                libc.actions_destroy(actions)
                raise OSError(error, f"cannot pass descriptor {fd}: {os.strerror(error)}")
        if len(cache) >= _ACTIONS_MAX:
            for old in cache.values():
                libc.actions_destroy(old)
            cache.clear()
        cache[dup2] = actions
    return actions


def _load():
    global _libc
    with _libc_lock:
        if _libc is None:
            try:
                _libc = False if os.environ.get(SPAWN_VARIABLE) == "os" else _Libc()
            except (OSError, AttributeError):
                _libc = False
    return _libc


def spawn(path, argv, env, extra=None, dup2=()):
    """Start ``path`` with ``argv`` in a new session, its environment ``env`` (an
    Environment) with the variables in ``extra`` (a dict) set on top; ``dup2`` is a tuple
    of (fd, target) pairs. Return the pid; raise OSError if it cannot run."""
    extra = extra or {}
    libc = _libc if _libc is not None else _load()
    if not isinstance(libc, _Libc):
        return os.posix_spawn(path, argv, env.as_dict(extra), setsid=True,
                              setsigdef=RESTORED_SIGNALS,
                              file_actions=[(os.POSIX_SPAWN_DUP2, fd, target)
                                            for fd, target in dup2])
    args = [os.fsencode(arg) for arg in argv]
    if any(b"\0" in arg for arg in args):
        raise ValueError("embedded null byte in a command's argument")
    c_argv = (ctypes.c_char_p * (len(args) + 1))(*args, None)
    c_env = env.table(extra)
    pid = ctypes.c_int()
    error = libc.spawn(ctypes.byref(pid), os.fsencode(path), _file_actions(libc, dup2),
                       libc.attr, c_argv, c_env)
    if error:
        raise OSError(error, os.strerror(error), path)
    return pid.value
