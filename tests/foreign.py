"""A foreign Gearman worker speaking the binary protocol itself, as PHP, Perl or Node
workers do: it sends what a test tells it (WORK_EXCEPTION, WORK_DATA chunks,
WORK_WARNING, a bare WORK_FAIL) and counts the jobs it was handed."""
import socket
import struct
import threading

CAN_DO, PRE_SLEEP, NOOP, NO_JOB = 1, 4, 6, 10
WORK_COMPLETE, WORK_FAIL, SET_CLIENT_ID = 13, 14, 22
WORK_EXCEPTION, WORK_DATA, WORK_WARNING = 25, 28, 29
GRAB_JOB_UNIQ, JOB_ASSIGN_UNIQ = 30, 31
_HEADER = struct.Struct(">4sII")


def packet(kind, *fields):
    body = b"\0".join(fields)
    return _HEADER.pack(b"\0REQ", kind, len(body)) + body


class ForeignWorker(threading.Thread):
    """Serves ``function`` on the gearmand at ``address`` (host, port); for each job it
    sends ``answer(handle, data)`` (a list of (kind, payload) packets)."""

    def __init__(self, address, function, answer, client_id=b"foreign"):
        super().__init__(daemon=True)
        self.sock = socket.create_connection(address)
        self.answer = answer
        self.jobs = []
        self.sock.sendall(packet(SET_CLIENT_ID, client_id) + packet(CAN_DO, function.encode()))
        self.start()

    def _read(self):
        head = self._exactly(_HEADER.size)
        _magic, kind, size = _HEADER.unpack(head)
        return kind, self._exactly(size)

    def _exactly(self, size):
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def run(self):
        try:
            self.sock.sendall(packet(GRAB_JOB_UNIQ))
            while True:
                kind, body = self._read()
                if kind == NO_JOB:
                    self.sock.sendall(packet(PRE_SLEEP))
                elif kind == NOOP:
                    self.sock.sendall(packet(GRAB_JOB_UNIQ))
                elif kind == JOB_ASSIGN_UNIQ:
                    handle, _function, _unique, data = body.split(b"\0", 3)
                    self.jobs.append(data)
                    for reply_kind, payload in self.answer(handle, data):
                        self.sock.sendall(packet(reply_kind, handle, *payload))
                    self.sock.sendall(packet(GRAB_JOB_UNIQ))
        except (OSError, ConnectionError):
            return

    def close(self):
        self.sock.close()
