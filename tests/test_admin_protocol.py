"""The admin reply parser: every format, split at every byte offset, errors and bad lines."""
import socket
import threading

import pytest

from gearman_frame.addresses import ServerAddress
from gearman_frame.errors import AdminError, ConnectionLost, ProtocolError
from gearman_frame.wire import admin_protocol as proto
from manage_client.admin import AdminConnection

REPLIES = {
    "status": (b"zzz\t0\t0\t1\nf2\t1\t0\t0\nf1\t5\t2\t3\n.\n", proto.parse_status,
               [proto.FunctionStatus("s", "zzz", 0, 0, 1), proto.FunctionStatus("s", "f2", 1, 0, 0),
                proto.FunctionStatus("s", "f1", 3, 2, 3)]),
    "prioritystatus": (b"f1\t1\t2\t3\t4\n.\n", proto.parse_prioritystatus,
                       [proto.PriorityStatus("s", "f1", 1, 2, 3, 4)]),
    "workers": (b"39 127.0.0.1 - :\n38 127.0.0.2 web.0 : a b\n.\n", proto.parse_workers,
                [proto.WorkerConnection("s", 39, "127.0.0.1", "-", []),
                 proto.WorkerConnection("s", 38, "127.0.0.2", "web.0", ["a", "b"])]),
    "show jobs": (b"H:vm:1\t0\t0\t1\n.\n", proto.parse_jobs,
                  [proto.QueuedJob("s", "H:vm:1", 0, 0, 1)]),
    "show unique jobs": (b"u1\nmy uniq\n.\n", proto.parse_uniques, ["u1", "my uniq"]),
    "empty status": (b".\n", proto.parse_status, []),
}


@pytest.mark.parametrize("name", list(REPLIES))
def test_block_replies_parse_at_every_split(name):
    raw, parse, expected = REPLIES[name]
    for cut in range(len(raw) + 1):
        buffer = proto.ReplyBuffer()
        buffer.feed(raw[:cut])
        lines = buffer.take_block()
        if cut < len(raw):
            assert lines is None, (name, cut)
            buffer.feed(raw[cut:])
            lines = buffer.take_block()
        assert parse(lines, "s") == expected


@pytest.mark.parametrize("raw, value", [(b"OK 1.1.20+ds\n", "1.1.20+ds"), (b"OK\r\n", ""),
                                        (b"OK 12244\n", "12244")])
def test_single_line_replies_at_every_split(raw, value):
    for cut in range(len(raw) + 1):
        buffer = proto.ReplyBuffer()
        buffer.feed(raw[:cut])
        line = buffer.take_line()
        if cut < len(raw):
            assert line is None
            buffer.feed(raw[cut:])
            line = buffer.take_line()
        assert proto.parse_ok(line, "s") == value


def test_err_replies_raise_with_the_servers_message():
    with pytest.raises(AdminError, match="INVALID_ARGUMENTS An incomplete set"):
        proto.parse_ok("ERR INVALID_ARGUMENTS An+incomplete+set", "s")
    buffer = proto.ReplyBuffer()
    buffer.feed(b"ERR UNKNOWN_COMMAND Unknown+server+command\r\n")
    with pytest.raises(AdminError, match="UNKNOWN_COMMAND"):
        proto.parse_status(buffer.take_block(), "s")


@pytest.mark.parametrize("parse, line", [
    (proto.parse_status, "f1\t1\t0"), (proto.parse_status, "f1\tx\t0\t0"),
    (proto.parse_prioritystatus, "f\t1\t2\t3"), (proto.parse_workers, "garbage"),
    (proto.parse_workers, "x 127.0.0.1 - :"), (proto.parse_jobs, "H:1\t0"),
])
def test_malformed_lines_are_protocol_errors(parse, line):
    with pytest.raises(ProtocolError):
        parse([line], "s")
    with pytest.raises(ProtocolError):
        proto.parse_ok("HELLO", "s")


def test_server_closing_mid_reply_is_a_connection_error():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def half_reply():
        conn, _ = listener.accept()
        conn.recv(100)
        conn.sendall(b"f1\t1\t0")
        conn.close()
    threading.Thread(target=half_reply, daemon=True).start()
    conn = AdminConnection(ServerAddress("127.0.0.1", listener.getsockname()[1]), timeout=5)
    with pytest.raises(ConnectionLost, match="mid-reply"):
        conn.command("status")
    listener.close()


def test_worker_names_come_from_thread_client_ids():
    assert proto.worker_name_of("web1.3") == "web1"
    assert proto.worker_name_of("web.eu.ctl") == "web.eu"
    assert proto.worker_name_of("-") is None
    assert proto.worker_name_of("plain") == "plain"
    assert proto.worker_name_of("web1.p2.3") == "web1"
    assert proto.worker_name_of("web1.batch-store.v2") == "web1"  # a batch task's thread
    assert proto.worker_name_of("web1.p2.batch-store") == "web1"
