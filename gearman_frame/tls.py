"""TLS to a job server named ``tls://host:port``: one client context for every
connection a process opens to it (sender, worker, admin).

gearmand 1.1.20 as Debian builds it has no TLS, so a TLS terminator sits in front of it
(``runadmin server start --tls`` runs stunnel). This module is imported only when a
``tls://`` server is configured: ``ssl`` loads OpenSSL, 2.2 MiB a plain worker does
not carry.
"""
from __future__ import annotations

import socket
import ssl

from .addresses import ServerAddress
from .errors import ConfigError, ServerUnavailable


class TlsClient:
    """How to open a verified TLS connection to a job server."""

    def __init__(self, ca_file: str | None = None, cert_file: str | None = None,
                 key_file: str | None = None, verify_hostname: bool = True,
                 config_path: str | None = None) -> None:
        try:
            self.context = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as err:
            raise ConfigError(config_path, "tls.ca_file", "a readable PEM file of CA "
                              "certificates", got=f"{ca_file}: {_reason(err)}") from err
        self.context.check_hostname = verify_hostname
        if cert_file:
            try:
                self.context.load_cert_chain(cert_file, key_file)
            except (OSError, ssl.SSLError) as err:
                raise ConfigError(config_path, "tls.cert_file", "a readable PEM certificate "
                                  "and its key (tls.key_file)",
                                  got=f"{cert_file}: {_reason(err)}") from err

    def connect(self, address: ServerAddress, timeout: float) -> ssl.SSLSocket:
        """A connected, verified TLS socket to ``address``; ServerUnavailable (one line
        naming the server and why) when it cannot be had."""
        try:
            sock = socket.create_connection(address.pair, timeout=timeout)
        except OSError as err:
            raise ServerUnavailable(f"{address}: {err.strerror or err}", [address]) from err
        return self.wrap(sock, address)

    def wrap(self, sock: socket.socket, address: ServerAddress) -> ssl.SSLSocket:
        """Do the handshake on a connected socket (blocking, within its timeout)."""
        try:
            return self.context.wrap_socket(sock, server_hostname=address.host)
        except ssl.SSLCertVerificationError as err:
            sock.close()
            raise ServerUnavailable(f"{address}: its certificate did not verify: "
                                    f"{err.verify_message}", [address]) from err
        except (OSError, ssl.SSLError) as err:
            sock.close()
            raise ServerUnavailable(f"{address}: TLS handshake failed: {_reason(err)}",
                                    [address]) from err

    @staticmethod
    def wants_io(err: BaseException) -> bool:
        """True for the 'try again when the socket is ready' errors of a non-blocking
        TLS socket (not failures)."""
        return isinstance(err, (ssl.SSLWantReadError, ssl.SSLWantWriteError))


def _reason(err: BaseException) -> str:
    return getattr(err, "reason", None) or getattr(err, "strerror", None) or str(err)
