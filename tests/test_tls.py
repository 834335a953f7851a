"""TLS to gearmand: `runadmin server start --tls` puts stunnel in front of a loopback
gearmand; senders, workers and the admin speak TLS to tls:// servers and verify them;
client certificates can be required."""
import os
import socket
import struct
import subprocess

import pytest
import yaml

from gearman_frame.processes import is_alive
from gearman_frame.daemons.gearmand import free_port
from gearman_frame.daemons.tls_front import find_stunnel

from .client_helpers import sendjob
from .helpers import wait_for
from .test_admin import runadmin

ECHO_REQ, ECHO_RES = 16, 17


@pytest.fixture(autouse=True)
def _needs_stunnel():
    if find_stunnel() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("stunnel4 is not installed (scripts/setup.sh installs it)")
        pytest.skip("stunnel4 is not installed")


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(folder, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={name}", cwd=folder)
    return folder / f"{name}.crt"


def make_cert(folder, name, ca, san=None):
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
            f"{name}.csr", "-subj", f"/CN={name}", cwd=folder)
    extra = []
    if san:
        (folder / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        extra = ["-extfile", f"{name}.ext"]
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", *extra, cwd=folder)
    return folder / f"{name}.crt", folder / f"{name}.key"


def write_config(path, port, ca=None, cert=None, key=None, **extra):
    tls = {k: str(v) for k, v in (("ca_file", ca), ("cert_file", cert), ("key_file", key))
           if v}
    path.write_text(yaml.safe_dump({"servers": [f"tls://127.0.0.1:{port}"], "tls": tls,
                                    "client": {"timeout": 5, "resend": 0,
                                               "outbox": "outbox.sqlite"},
                                    "worker": {"name": "tw", "threads": 2, "grace": 3},
                                    "functions": {"say": {"command": ["echo", "{word}"]}},
                                    **extra}))
    return path


@pytest.fixture
def certs(tmp_path):
    folder = tmp_path / "certs"
    folder.mkdir()
    make_ca(folder, "ca")
    make_ca(folder, "other")
    make_ca(folder, "clients")
    server = make_cert(folder, "server", "ca", "IP:127.0.0.1,DNS:localhost")
    client = make_cert(folder, "client", "clients")
    return folder, server, client


@pytest.fixture
def tls_server(tmp_path):
    started = []

    def start(config, *flags):
        proc = runadmin(config, "server", "start", "--tls", "--data-dir",
                        str(tmp_path / "data"), *flags)
        assert proc.returncode == 0, proc.stderr
        started.append(config)
        return proc

    yield start
    for config in started:
        runadmin(config, "server", "stop", "--data-dir", str(tmp_path / "data"))


def plain_echo(port):
    """What a plain-TCP Gearman client gets from the port: the ECHO_RES, or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
            sock.sendall(struct.pack(">4sII", b"\0REQ", ECHO_REQ, 5) + b"hello")
            reply = sock.recv(64)
    except OSError:
        return None
    return reply if reply[4:8] == struct.pack(">I", ECHO_RES) else None


def test_senders_workers_and_the_admin_speak_tls(certs, tls_server, start_workers, tmp_path):
    folder, (cert, key), _client = certs
    port = free_port()
    config = write_config(tmp_path / "c.yaml", port, ca=folder / "ca.crt")
    started = tls_server(config, "--tls-cert", str(cert), "--tls-key", str(key))
    assert f"tls://127.0.0.1:{port}" in started.stdout and "loopback only" in started.stdout
    worker = start_workers([f"tls://127.0.0.1:{port}"], {"say": {"command": ["echo",
                                                                              "{word}"]}},
                           extra_config={"tls": {"ca_file": str(folder / "ca.crt")}})
    proc = sendjob(config, "run", "say", "word=secret")
    assert (proc.returncode, proc.stdout) == (0, "secret\n"), proc.stderr
    status = runadmin(config, "status", "--json")
    assert status.returncode == 0 and '"say"' in status.stdout, status.stderr
    workers = runadmin(config, "workers")
    assert workers.returncode == 0 and worker.name in workers.stdout
    wrong = write_config(tmp_path / "wrong.yaml", port, ca=folder / "other.crt")
    proc = sendjob(wrong, "run", "say", "word=x")
    assert proc.returncode == 3 and f"tls://127.0.0.1:{port}" in proc.stderr
    assert "certificate did not verify" in proc.stderr.splitlines()[-1]
    assert runadmin(wrong, "status").returncode == 3
    assert plain_echo(port) is None  # a plain-TCP client cannot talk to the TLS port
    status = runadmin(config, "server", "status", "--data-dir", str(tmp_path / "data"))
    assert status.returncode == 0 and "stunnel running" in status.stdout


def test_client_certificates_can_be_required(certs, tls_server, tmp_path):
    folder, (cert, key), (client_cert, client_key) = certs
    port = free_port()
    anonymous = write_config(tmp_path / "anon.yaml", port, ca=folder / "ca.crt")
    tls_server(anonymous, "--tls-cert", str(cert), "--tls-key", str(key),
               "--tls-client-ca", str(folder / "clients.crt"))
    proc = runadmin(anonymous, "status")
    assert proc.returncode == 3 and f"tls://127.0.0.1:{port}" in proc.stderr, proc.stderr
    known = write_config(tmp_path / "known.yaml", port, ca=folder / "ca.crt",
                         cert=client_cert, key=client_key)
    proc = runadmin(known, "status")
    assert proc.returncode == 0, proc.stderr


def test_local_certificates_are_made_once_and_stop_leaves_nothing(tls_server, tmp_path):
    port = free_port()
    data = tmp_path / "data"
    config = write_config(tmp_path / "c.yaml", port, ca=data / "tls" / "ca.crt")
    started = tls_server(config)
    assert "CA for tls.ca_file" in started.stdout
    assert runadmin(config, "status").returncode == 0  # verified with the made CA
    stunnel_pid = int((data / "tls" / f"stunnel-{port}.pid").read_text())
    stop = runadmin(config, "server", "stop", "--data-dir", str(data))
    assert stop.returncode == 0 and "stopped" in stop.stdout, stop.stderr
    wait_for(lambda: not is_alive(stunnel_pid), 10, "stunnel to exit")
    status = runadmin(config, "server", "status", "--data-dir", str(data))
    assert status.returncode == 1
