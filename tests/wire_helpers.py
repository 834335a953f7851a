"""Helpers for wire-level tests: an echo worker thread and raw admin commands."""
import socket
import threading

from gearman_frame.wire import WireWorker


class WorkerThread:
    """A WireWorker serving ``tasks`` ({name: callback}) in a daemon thread."""

    def __init__(self, servers, tasks, client_id="test.0"):
        self.worker = WireWorker(servers, client_id=client_id)
        for name, callback in tasks.items():
            self.worker.register_task(name, callback)
        self.thread = threading.Thread(target=self.worker.work, name=client_id, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.worker.stop()
        self.thread.join(10)
        assert not self.thread.is_alive(), "worker thread did not stop"


def echo(worker, job):
    return job.data


def admin(server, command):
    """Send one admin text command to gearmand and return its first reply line.

    Lines end in CRLF: gearmand 1.1.20 drops the last character of a line ended by LF
    alone ('create function ab' creates 'a')."""
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(command.encode() + b"\r\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.decode().strip()
