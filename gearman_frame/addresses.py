"""Job-server addresses: one parser for config files, env vars and command lines."""
from dataclasses import dataclass

#: gearmand's IANA port, used when an address names only a host.
DEFAULT_PORT = 4730


@dataclass(frozen=True, order=True)
class ServerAddress:
    """One gearmand endpoint, printed as ``host:port`` (``[v6]:port`` for IPv6)."""

    host: str
    port: int = DEFAULT_PORT

    def __str__(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def is_loopback(self):
        """True for 127.0.0.0/8, ::1 and localhost: a server only this host can reach."""
        return (self.host == "localhost" or self.host == "::1"
                or self.host.startswith("127."))

    @property
    def pair(self):
        """``(host, port)``, the form socket and the wire library take."""
        return (self.host, self.port)


def parse_address(text):
    """Parse ``host``, ``host:port`` or ``[v6addr]:port``; raise ValueError saying why."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("a 'host:port' string")
    text = text.strip()
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
        return ServerAddress(host, DEFAULT_PORT)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError("a port from 1 to 65535")
    return ServerAddress(host, int(port_text))


def parse_address_list(text):
    """Parse a comma-separated list (the form of ``GEARMAN_FRAME_SERVERS`` and ``--servers``)."""
    parts = [p for p in (text or "").split(",") if p.strip()]
    if not parts:
        raise ValueError("a comma-separated list of 'host:port'")
    return tuple(parse_address(p) for p in parts)
