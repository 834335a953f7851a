"""TLS in front of a local gearmand: stunnel on the public port, gearmand on loopback.

Debian's gearmand 1.1.20 accepts ``--ssl`` but is built without it (a TLS handshake to
it is logged as "invalid magic value" and dropped), so TLS terminates in front of it, as
for any plain-TCP service. stunnel (Debian ``stunnel4``) is the terminator: small, in
every distribution, configured by one file, and it can require client certificates
from a CA. For local use, a CA and a server certificate are made once in the data dir
with the openssl CLI.
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
from pathlib import Path

from ..errors import EXIT_UNREACHABLE, EXIT_USAGE, ServerControlError
from ..files import private_folder
from ..processes import cmdline, is_alive, wait_until
from .base import PidfileDaemon, accepts

log = logging.getLogger(__name__)

#: Seconds to wait for stunnel to listen.
START_TIMEOUT = 10.0
#: Days the local CA and server certificate are valid.
LOCAL_CERT_DAYS = 825


def find_stunnel() -> str | None:
    return shutil.which("stunnel4") or shutil.which("stunnel")


class TlsFront(PidfileDaemon):
    """stunnel accepting TLS on ``host:port`` and passing the bytes to gearmand on
    ``127.0.0.1:backend_port``; its files in ``data_dir/tls``."""

    kind = "stunnel"

    def __init__(self, data_dir: str | os.PathLike, host: str, port: int,
                 backend_port: int | None = None, cert: str | os.PathLike | None = None,
                 key: str | os.PathLike | None = None,
                 client_ca: str | os.PathLike | None = None) -> None:
        self.folder = Path(data_dir).resolve() / "tls"
        self.host, self.port = host, int(port)
        self.backend_port = backend_port
        self.cert, self.key, self.client_ca = cert, key, client_ca

    @property
    def address(self) -> str:
        return f"tls://{self.host}:{self.port}"

    @property
    def conf(self) -> Path:
        return self.folder / f"stunnel-{self.port}.conf"

    @property
    def backend_file(self) -> Path:
        """Names the loopback port of the gearmand behind this front (for stop/status)."""
        return self.folder / f"backend-{self.port}"

    def saved_backend_port(self) -> int | None:
        try:
            return int(self.backend_file.read_text().strip())
        except (OSError, ValueError):
            return None

    # -- certificates
    def local_certificates(self) -> tuple[Path, Path, Path]:
        """(cert, key, ca) made once in the data dir: a CA, and a server certificate it
        signs for this host name, localhost and 127.0.0.1."""
        private_folder(self.folder)
        ca_key, ca_cert = self.folder / "ca.key", self.folder / "ca.crt"
        key, cert = self.folder / "server.key", self.folder / "server.crt"
        if not ca_cert.exists():
            _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key,
                     "-out", ca_cert, "-days", LOCAL_CERT_DAYS, "-subj",
                     "/CN=gearman-frame local CA")
        if not cert.exists():
            names = sorted({f"DNS:{socket.gethostname()}", "DNS:localhost", "IP:127.0.0.1",
                            f"{'IP' if _is_ip(self.host) else 'DNS'}:{self.host}"})
            request = self.folder / "server.csr"
            _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", request,
                     "-subj", f"/CN={self.host}")
            extensions = self.folder / "server.ext"
            extensions.write_text(f"subjectAltName={','.join(names)}\n")
            _openssl("x509", "-req", "-in", request, "-CA", ca_cert, "-CAkey", ca_key,
                     "-CAcreateserial", "-out", cert, "-days", LOCAL_CERT_DAYS, "-extfile",
                     extensions)
        return cert, key, ca_cert

    # -- the process
    def _is_ours(self, pid: int) -> bool:
        return is_alive(pid) and str(self.conf).encode() in cmdline(pid)

    def start(self, timeout: float = START_TIMEOUT) -> int | None:
        binary = find_stunnel()
        if binary is None:
            raise ServerControlError("stunnel not found: install the 'stunnel4' package "
                                     "(apt-get install stunnel4)", EXIT_UNREACHABLE)
        if self.running_pid() is not None:
            raise ServerControlError(f"stunnel already runs on {self.address}", EXIT_USAGE)
        for label, path in (("--tls-cert", self.cert), ("--tls-key", self.key),
                            ("--tls-client-ca", self.client_ca)):
            if path is not None and not os.access(path, os.R_OK):
                raise ServerControlError(f"{label} {path}: not a readable file", EXIT_USAGE)
        private_folder(self.folder)
        self.conf.write_text(self._config())
        self.backend_file.write_text(f"{self.backend_port}\n")
        proc = subprocess.run([binary, str(self.conf)], capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            raise ServerControlError(f"stunnel on {self.address} did not start: "
                                     f"{_last_line(proc.stderr or self._log())}",
                                     EXIT_UNREACHABLE)
        listening = wait_until(lambda: self.running_pid() is not None
                               and accepts(self.host, self.port), timeout)
        if not listening:
            self.stop()
            raise ServerControlError(f"stunnel on {self.address} did not listen within "
                                     f"{timeout}s: {_last_line(self._log())}",
                                     EXIT_UNREACHABLE)
        return self.running_pid()

    def _config(self) -> str:
        lines = [f"pid = {self.pidfile}", f"output = {self.logfile}", "foreground = no",
                 "debug = notice", "", "[gearmand]", f"accept = {self.host}:{self.port}",
                 f"connect = 127.0.0.1:{self.backend_port}", f"cert = {self.cert}",
                 f"key = {self.key}", "sslVersionMin = TLSv1.2"]
        if self.client_ca:
            lines += [f"CAfile = {self.client_ca}", "verifyChain = yes", "requireCert = yes"]
        return "\n".join(lines) + "\n"

    def _log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def forget(self) -> None:
        self.backend_file.unlink(missing_ok=True)


def _openssl(*args: object) -> None:
    try:
        proc = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True,
                              timeout=60)
    except FileNotFoundError as err:
        raise ServerControlError("openssl not found: install the 'openssl' package to make "
                                 "local certificates, or give --tls-cert/--tls-key",
                                 EXIT_UNREACHABLE) from err
    if proc.returncode != 0:
        raise ServerControlError(f"openssl {args[0]} failed: {_last_line(proc.stderr)}",
                                 EXIT_UNREACHABLE)


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return True
    except OSError:
        return False


def _last_line(text: str | None) -> str:
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no message"
