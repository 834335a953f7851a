"""Job-server addresses: one parser for config files, env vars and command lines.

``host:port`` is plain TCP; ``tls://host:port`` is TLS (the config's ``tls`` section says
how to verify the server and which client certificate to show).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .tls import TlsClient

#: gearmand's IANA port, used when an address names only a host.
DEFAULT_PORT = 4730
TLS_SCHEME = "tls://"


@dataclass(frozen=True, order=True)
class ServerAddress:
    """One gearmand endpoint, printed as ``host:port`` (``[v6]:port`` for IPv6)."""

    host: str
    port: int = DEFAULT_PORT
    tls: bool = False
    #: The TlsClient that opens connections to it (set by the config for tls:// servers).
    tls_client: TlsClient | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{TLS_SCHEME if self.tls else ''}{host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        """True for 127.0.0.0/8, ::1 (and 127/8 mapped into IPv6) and localhost: a server
        only this host can reach. A name other than localhost is not known to be one."""
        if self.host == "localhost":
            return True
        try:
            address = ipaddress.ip_address(self.host)
        except ValueError:
            return False
        mapped = getattr(address, "ipv4_mapped", None)
        return address.is_loopback or (mapped is not None and mapped.is_loopback)

    @property
    def pair(self) -> tuple[str, int]:
        """``(host, port)``, the form socket and the wire library take."""
        return (self.host, self.port)


def parse_address(text: object) -> ServerAddress:
    """Parse ``host``, ``host:port`` or ``[v6addr]:port``, each optionally after
    ``tls://``; raise ValueError saying why."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("a 'host:port' string")
    text = text.strip()
    tls = text.startswith(TLS_SCHEME)
    if tls:
        text = text[len(TLS_SCHEME):]
    elif "://" in text:
        raise ValueError("'host:port' or 'tls://host:port'")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError("'[ipv6]:port'")
        port_text = rest[1:] if rest else ""
    elif text.count(":") > 1:
        host, port_text = text, ""
    else:
        host, _, port_text = text.partition(":")
    if not host or any(c.isspace() for c in host):
        raise ValueError("a host name or IP address")
    if not port_text:
        return ServerAddress(host, DEFAULT_PORT, tls)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError("a port from 1 to 65535")
    return ServerAddress(host, int(port_text), tls)


def parse_address_list(text: str | None) -> tuple[ServerAddress, ...]:
    """Parse a comma-separated list (the form of ``GEARMAN_FRAME_SERVERS`` and ``--servers``)."""
    parts = [p for p in (text or "").split(",") if p.strip()]
    if not parts:
        raise ValueError("a comma-separated list of 'host:port'")
    return tuple(parse_address(p) for p in parts)


def parse_listen(text: str) -> tuple[str, int]:
    """``(host, port)`` of a ``HOST:PORT`` to listen on (``[v6]:port`` too); ValueError
    naming what was expected."""
    host, _, port = str(text).rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT to listen on (e.g. 127.0.0.1:9464), got "
                         f"{text!r}")
    return host.strip("[]"), int(port)
