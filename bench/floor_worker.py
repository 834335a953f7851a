"""The floor under W3: the least a Python worker can do for a `true` job.

``python -m bench.floor_worker PORT THREADS FUNCTION`` serves FUNCTION on the raw Gearman
protocol with THREADS threads, each with its own connection: take a job, start `true`
through ``worker_client.spawn`` (posix_spawn without the GIL), wait for it, answer. No
output capture, no timeout, no process hygiene, no envelope, no reconnect: what
gearman-frame's worker costs above this is what its features cost.
"""
import os
import shutil
import socket
import struct
import sys
import threading

from python3_gearman.protocol import (GEARMAN_COMMAND_CAN_DO, GEARMAN_COMMAND_GRAB_JOB,
                                      GEARMAN_COMMAND_JOB_ASSIGN, GEARMAN_COMMAND_NO_JOB,
                                      GEARMAN_COMMAND_NOOP, GEARMAN_COMMAND_PRE_SLEEP,
                                      GEARMAN_COMMAND_WORK_COMPLETE)

from worker_client.spawn import Environment, spawn

_HEADER = struct.Struct("!4sII")
TRUE = shutil.which("true")  # the `true` gearman-frame and `gearman -w` find on PATH


def _packet(cmd_type, data=b""):
    return _HEADER.pack(b"\0REQ", cmd_type, len(data)) + data


def serve(port, function, environment):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(_packet(GEARMAN_COMMAND_CAN_DO, function.encode())
                 + _packet(GEARMAN_COMMAND_GRAB_JOB))
    buffer = b""
    while True:
        while len(buffer) < _HEADER.size or len(buffer) < _HEADER.size + _HEADER.unpack_from(
                buffer)[2]:
            data = sock.recv(65536)
            if not data:
                return
            buffer += data
        _magic, cmd_type, length = _HEADER.unpack_from(buffer)
        body, buffer = buffer[_HEADER.size:_HEADER.size + length], buffer[_HEADER.size + length:]
        if cmd_type == GEARMAN_COMMAND_NO_JOB:
            sock.sendall(_packet(GEARMAN_COMMAND_PRE_SLEEP))
        elif cmd_type == GEARMAN_COMMAND_NOOP:
            sock.sendall(_packet(GEARMAN_COMMAND_GRAB_JOB))
        elif cmd_type == GEARMAN_COMMAND_JOB_ASSIGN:
            handle = body.split(b"\0", 1)[0]
            os.waitpid(spawn(TRUE, ["true"], environment), 0)
            sock.sendall(_packet(GEARMAN_COMMAND_WORK_COMPLETE, handle + b"\0")
                         + _packet(GEARMAN_COMMAND_GRAB_JOB))


def main():
    port, threads, function = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    environment = Environment(os.environ)
    workers = [threading.Thread(target=serve, args=(port, function, environment), daemon=True)
               for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()


if __name__ == "__main__":
    main()
