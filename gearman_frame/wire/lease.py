"""A lease held in gearmand: the process holding the one job of a lease function is the
active one; the others wait.

gearmand hands a job to one worker at a time and hands it out again the moment that
worker's connection closes (a crash, a SIGKILL: the kernel closes the socket) or its
keepalive finds the host gone. So each contender keeps one connection to the first
server it can reach, registered for the lease function, and on every ``try_take`` submits
the lease job (a background job with a fixed unique: gearmand merges it with the one that
exists, held or queued) and asks for it. Whoever gets it holds it, unanswered, for as long
as it is active; ``release`` closes the connection. No server of our own, no clock
agreement. If gearmand drops the job after ``--job-retries`` hand-outs, the next
``try_take`` submits it again.
"""
from __future__ import annotations

import select
import socket
from typing import Sequence

from ..addresses import ServerAddress
from ..errors import ServerUnavailable
from .connection import detect_dead_peer, open_socket
from .packets import (CAN_DO, GET_STATUS_UNIQUE, GRAB_JOB_UNIQ, JOB_ASSIGN_UNIQ, JOB_CREATED,
                      MAGIC_RES, SET_CLIENT_ID, STATUS_RES_UNIQUE, SUBMIT_JOB_BG, read_packet,
                      request)

#: Seconds one exchange with gearmand may take before the lease server counts as gone.
ANSWER_TIMEOUT = 5.0
#: Seconds after which a silently vanished lease server fails the connection.
DEAD_AFTER = 11.0


class Lease:
    """One contender for the lease function ``function`` across ``servers`` (in order)."""

    def __init__(self, servers: Sequence[ServerAddress], function: str, unique: str, client_id: str,
                 connect_timeout: float = 1.0) -> None:
        self.servers = list(servers)
        self.function = function
        #: The lease job's unique (GET_STATUS_UNIQUE asks by unique alone: make it unique
        #: across lease functions).
        self.unique = unique
        self.client_id = client_id
        self.connect_timeout = connect_timeout
        self.sock: socket.socket | None = None
        #: The server the connection goes to (None: not connected).
        self.server: ServerAddress | None = None
        self.held = False

    # -- the connection
    def _connect(self) -> None:
        """Connect to the first server that answers; ServerUnavailable if none does."""
        problems = []
        for server in self.servers:
            try:
                sock = open_socket(server, self.connect_timeout)
            except ServerUnavailable as err:
                problems.append(str(err))
                continue
            sock.settimeout(ANSWER_TIMEOUT)
            detect_dead_peer(sock, DEAD_AFTER)
            try:
                sock.sendall(request(SET_CLIENT_ID, self.client_id)
                             + request(CAN_DO, self.function))
            except OSError as err:
                sock.close()
                problems.append(f"{server}: {err}")
                continue
            self.sock, self.server = sock, server
            return
        raise ServerUnavailable("no job server reachable for the lease: "
                                + "; ".join(problems), self.servers)

    def release(self) -> None:
        """Give the lease up (gearmand hands the job to another contender at once)."""
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock, self.server, self.held = None, None, False

    # -- taking and keeping it
    def try_take(self) -> bool:
        """Hold the lease if no one else does; True while this contender holds it.
        ServerUnavailable if no server can be reached."""
        if self.held:
            return self.still_held()
        if self.sock is None:
            self._connect()
        try:
            self._send(request(SUBMIT_JOB_BG, self.function, self.unique, b""),
                       request(GRAB_JOB_UNIQ))
            self._expect(JOB_CREATED)
            kind, _body = self._read()
        except OSError as err:
            self.release()
            raise ServerUnavailable(f"lease server lost: {err}", self.servers) from err
        self.held = kind == JOB_ASSIGN_UNIQ
        return self.held

    def still_held(self) -> bool:
        """False once the lease connection is gone (the job went back to gearmand)."""
        if self.sock is None:
            return False
        try:  # nothing is sent to a worker that never sleeps: readable means closed
            readable, _w, _x = select.select([self.sock], [], [], 0)
            if readable and not self.sock.recv(4096):
                self.release()
        except OSError:
            self.release()
        return self.held

    def held_elsewhere(self) -> bool:
        """True if another contender holds the lease now (gearmand says it runs)."""
        if self.held or self.sock is None:
            return False
        try:
            self._send(request(GET_STATUS_UNIQUE, self.unique))
            _kind, body = self._expect(STATUS_RES_UNIQUE)
        except OSError:
            self.release()
            return False
        fields = body.split(b"\0")
        return len(fields) >= 3 and fields[1] == b"1" and fields[2] == b"1"

    # -- packets
    def _send(self, *packets: bytes) -> None:
        assert self.sock is not None
        self.sock.sendall(b"".join(packets))

    def _read(self) -> tuple[int, bytes]:
        assert self.sock is not None
        magic, kind, body = read_packet(self.sock)
        if magic != MAGIC_RES:
            raise ConnectionError(f"not a response packet: {magic!r}")
        return kind, body

    def _expect(self, wanted: int) -> tuple[int, bytes]:
        kind, body = self._read()
        if kind != wanted:
            raise ConnectionError(f"expected packet {wanted}, got {kind}: {body[:100]!r}")
        return kind, body
