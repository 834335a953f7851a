"""``servers:`` and ``tls:``: where the job servers are, and how TLS ones are reached."""
from __future__ import annotations

import dataclasses

from ..addresses import ServerAddress, parse_address, parse_address_list
from .rules import Rules

class ServerRules(Rules):
    def servers(self, value: object) -> tuple[ServerAddress, ...]:
        if isinstance(value, str):  # "host:port,host:port" (a flag or a variable)
            try:
                return tuple(parse_address_list(value))
            except ValueError as err:
                raise self.error("servers", str(err), value) from err
        if not isinstance(value, list) or not value:
            raise self.error("servers", "a non-empty list of 'host:port'", value)
        result = []
        for i, item in enumerate(value):
            try:
                result.append(parse_address(item))
            except ValueError as err:
                raise self.error(f"servers[{i}]", str(err), item) from err
        return tuple(result)

    def with_tls(self, servers: tuple[ServerAddress, ...],
                 raw: object) -> tuple[ServerAddress, ...]:
        """The servers, each tls:// one given the TLS client the ``tls`` section makes
        (ssl is imported only when there is one)."""
        raw = self.mapping(raw, "tls", ("ca_file", "cert_file", "key_file",
                                        "verify_hostname"))
        files = {name: self.optional(self.string, raw.get(name), f"tls.{name}")
                 for name in ("ca_file", "cert_file", "key_file")}
        verify = self.boolean(raw.get("verify_hostname", True), "tls.verify_hostname")
        if files["key_file"] and not files["cert_file"]:
            raise self.error("tls.cert_file", "a client certificate beside tls.key_file",
                             got="none")
        if not self.connect or not any(s.tls for s in servers):
            return servers
        from ..tls import TlsClient  # ssl costs 2.2 MiB: only for a tls:// server
        paths = {k: self.beside_config(v) if v else None for k, v in files.items()}
        client = TlsClient(paths["ca_file"], paths["cert_file"], paths["key_file"], verify,
                           config_path=self.path)
        return tuple(dataclasses.replace(s, tls_client=client) if s.tls else s
                     for s in servers)
