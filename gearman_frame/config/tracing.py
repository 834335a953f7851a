"""``tracing:``: OpenTelemetry traces from the sender into the command, off unless
configured here or by the standard variables (``OTEL_TRACES_EXPORTER``,
``OTEL_SERVICE_NAME``, ``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_TRACES_SAMPLER_ARG``),
which override the file's keys, as OpenTelemetry's own SDKs do.

``exporter`` is ``console`` (spans as JSON to ``file``, or stderr: never stdout, where
``--json`` answers go), ``otlp`` (OTLP over HTTP to ``endpoint``, a collector's base
address) or ``none``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit

from .rules import Rules

EXPORTERS = ("console", "otlp", "none")
#: OTLP/HTTP's usual port on a collector.
DEFAULT_OTLP_ENDPOINT = "http://127.0.0.1:4318"
#: Variable -> the key it overrides.
ENVIRONMENT = {"OTEL_TRACES_EXPORTER": "tracing.exporter",
               "OTEL_SERVICE_NAME": "tracing.service_name",
               "OTEL_EXPORTER_OTLP_ENDPOINT": "tracing.endpoint",
               "OTEL_TRACES_SAMPLER_ARG": "tracing.sample_ratio"}


@dataclass(frozen=True)
class TracingConfig:
    """``tracing:`` (see the module docstring); ``exporter`` None: tracing is off."""

    exporter: str | None = None
    endpoint: str = DEFAULT_OTLP_ENDPOINT
    #: The share of new traces kept (a sender's choice is followed by its workers).
    sample_ratio: float = 1.0
    #: The console exporter's file (absolute); None: stderr.
    file: str | None = None
    #: None: ``gearman-frame-<role>`` (sender, worker, admin).
    service_name: str | None = None

    @property
    def on(self) -> bool:
        return self.exporter is not None


def environment_layer(environ: Mapping[str, str]) -> dict[str, tuple[str, Any]]:
    """The OTEL_* variables that are set, as config overrides naming them."""
    return {key: (f"${name}", environ[name]) for name, key in ENVIRONMENT.items()
            if environ.get(name)}


class TracingRules(Rules):
    def tracing(self, raw: Any) -> TracingConfig:
        raw = self.mapping(raw, "tracing", ("exporter", "endpoint", "sample_ratio", "file",
                                            "service_name"))
        exporter = raw.get("exporter", "none")
        if exporter is False:  # YAML reads a bare `off` as false
            exporter = "none"
        exporter = self.string(exporter, "tracing.exporter", EXPORTERS)
        endpoint = self.string(raw.get("endpoint", DEFAULT_OTLP_ENDPOINT), "tracing.endpoint")
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self.error("tracing.endpoint", "an http:// or https:// address of an OTLP "
                             "collector", endpoint)
        ratio = raw.get("sample_ratio", 1.0)
        try:
            ratio = float(ratio) if not isinstance(ratio, bool) else -1.0
        except (TypeError, ValueError):
            ratio = -1.0
        if not 0.0 <= ratio <= 1.0:
            raise self.error("tracing.sample_ratio", "a number from 0 to 1",
                             raw.get("sample_ratio"))
        file = self.optional(self.string, raw.get("file"), "tracing.file")
        return TracingConfig(
            exporter=None if exporter == "none" else exporter,
            endpoint=endpoint, sample_ratio=ratio,
            file=None if file is None else self.beside_config(file),
            service_name=self.optional(self.string, raw.get("service_name"),
                                       "tracing.service_name"))
