"""OpenTelemetry traces, from the sender through the worker into the command (``tracing:``
in the config, or the standard OTEL_* variables; off unless configured).

The sender's span context travels in the job's envelope as W3C ``traceparent`` and
``tracestate`` (signed with the rest); the worker continues it, and hands its attempt's
context to the command as ``TRACEPARENT``/``TRACESTATE``, so a traced program continues
the trace. One Tracing per process and role: spans go out through a batch processor,
off the job's thread, so a slow or unreachable collector never slows or fails a job.
opentelemetry is imported only when tracing is on.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import threading
import time
from typing import Any

from .config.tracing import TracingConfig
from .errors import ConfigError

log = logging.getLogger(__name__)

#: Seconds an OTLP export may take (the SDK's default is 10): a collector that does not
#: answer holds spans back, never a process at its exit for long.
EXPORT_TIMEOUT = 2.0
#: Seconds a process waits at exit for its last spans to go out.
EXIT_WAIT = 1.0
#: An exporter's complaints (a collector down) reach the log once per this many seconds.
COMPLAINT_EVERY = 60.0
#: The variables a command gets (W3C trace context, as traced programs read them).
TRACEPARENT, TRACESTATE = "TRACEPARENT", "TRACESTATE"

_OPEN: dict[tuple, "Tracing"] = {}


def command_environment(traceparent: str | None, tracestate: str | None) -> dict[str, str]:
    """A command's TRACEPARENT and TRACESTATE (what is set of them)."""
    env = {TRACEPARENT: traceparent} if traceparent else {}
    if traceparent and tracestate:
        env[TRACESTATE] = tracestate
    return env
_LOCK = threading.Lock()


def open_tracing(config: Any, role: str) -> Tracing | None:
    """This process's Tracing for ``role`` (sender, worker, admin), or None when off."""
    settings: TracingConfig = config.tracing
    if not settings.on:
        return None
    with _LOCK:
        key = (settings, role)
        if key not in _OPEN:
            _OPEN[key] = Tracing(settings, role, config.path)
        return _OPEN[key]


def console_line(span: Any) -> str:
    """A finished span as one line of JSON, with the keys and formats of the SDK's own
    ``to_json`` that matter (name, context, kind, parent_id, times, status, attributes,
    resource) at half its cost: the export thread's formatting took the GIL from the jobs
    (47 against 26 us a span, measured with the batch processor)."""
    context, parent, status = span.context, span.parent, span.status
    return json.dumps({
        "name": span.name,
        "context": {"trace_id": f"0x{context.trace_id:032x}",
                    "span_id": f"0x{context.span_id:016x}"},
        "kind": str(span.kind),
        "parent_id": None if parent is None else f"0x{parent.span_id:016x}",
        "start_time": _iso(span.start_time), "end_time": _iso(span.end_time),
        "status": {"status_code": status.status_code.name,
                   **({"description": status.description} if status.description else {})},
        "attributes": dict(span.attributes or {}),
        "resource": {"attributes": dict(span.resource.attributes)},
    }, default=str) + "\n"


def _iso(nanoseconds: int | None) -> str | None:
    if nanoseconds is None:
        return None
    seconds, rest = divmod(nanoseconds, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rest:09d}Z"


class _Seldom(logging.Filter):
    """Lets one warning of a logger through per COMPLAINT_EVERY seconds: a collector that
    is down is said, not said twice a second by every process."""

    def __init__(self) -> None:
        super().__init__()
        self.last = float("-inf")

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now - self.last < COMPLAINT_EVERY:
            return False
        self.last = now
        return True


def _quiet_exporters() -> None:
    for name in ("opentelemetry.exporter.otlp.proto.http.trace_exporter",
                 "opentelemetry.exporter.otlp.proto.http._common",
                 "opentelemetry.sdk.trace.export"):
        logging.getLogger(name).addFilter(_Seldom())


class Tracing:
    """A tracer provider of its own (sampler, exporter, service name), and the few ways
    the roles use it. The first one made is also the global provider, so spans a Python
    task makes with OpenTelemetry's API nest in the job's."""

    def __init__(self, settings: TracingConfig, role: str, path: str | None = None):
        try:
            from opentelemetry import trace
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
            from opentelemetry.trace.propagation.tracecontext import (
                TraceContextTextMapPropagator)
        except ImportError:
            raise ConfigError(path, "tracing.exporter", "opentelemetry installed for "
                              "tracing (pip install 'gearman-frame[tracing]')",
                              got=f"{settings.exporter}, without it") from None
        self.settings, self.role = settings, role
        self._trace = trace
        self.kinds = trace.SpanKind
        self.provider = TracerProvider(  # shut down by close(), bounded, not at exit by itself
            shutdown_on_exit=False, resource=Resource.create({"service.name": settings.service_name
                                      or f"gearman-frame-{role}",
                                      "gearman_frame.role": role}),
            sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)))
        self.provider.add_span_processor(self._processor(settings))
        self.tracer = self.provider.get_tracer("gearman_frame")
        self.propagator = TraceContextTextMapPropagator()
        if not _OPEN:
            trace.set_tracer_provider(self.provider)
            _quiet_exporters()
        atexit.register(self.close)

    @staticmethod
    def _processor(settings: TracingConfig) -> Any:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        if settings.exporter == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter
            out = (open(settings.file, "a", encoding="utf-8")  # noqa: SIM115 (flushed per batch)
                   if settings.file else sys.stderr)  # never stdout: --json answers go there
            exporter: Any = ConsoleSpanExporter(out=out, formatter=console_line)
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter)
            endpoint = settings.endpoint.rstrip("/")
            if not endpoint.endswith("/v1/traces"):
                endpoint += "/v1/traces"
            exporter = OTLPSpanExporter(endpoint=endpoint, timeout=EXPORT_TIMEOUT)
        return BatchSpanProcessor(exporter, schedule_delay_millis=500,
                                  export_timeout_millis=int(EXPORT_TIMEOUT * 1000))

    # -- sampling, decided before any span is made (an unsampled job makes none)
    def sample_new(self) -> bool:
        """Whether a new trace is kept: the sampler's ratio, drawn here so that a job not
        kept costs no span at all (the SDK's ratio sampler draws on a random trace id:
        the same odds)."""
        ratio = self.settings.sample_ratio
        if ratio >= 1.0:
            return True
        import random  # here: a worker that does not trace never loads it
        return ratio > 0.0 and random.random() < ratio

    @staticmethod
    def sampled(traceparent: str) -> bool:
        """The sampled flag of a W3C ``traceparent`` (False for a malformed one)."""
        flags = traceparent[53:55] if len(traceparent) >= 55 else ""
        try:
            return bool(int(flags, 16) & 1)
        except ValueError:
            return False

    @staticmethod
    def unsampled() -> dict[str, str]:
        """A context for a trace not kept: it travels, so the workers do not keep it
        either, and the command still gets a TRACEPARENT."""
        return {"traceparent": f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-00"}

    # -- spans
    def start(self, name: str, parent: Any = None, kind: str = "INTERNAL",
              start_time: float | None = None, **attributes: Any) -> Any:
        """A started span, a child of ``parent`` (a span, a Context, or None: a root or
        the current span); ``start_time`` in epoch seconds."""
        if hasattr(parent, "get_span_context"):  # a span (a Context has none)
            parent = self._trace.set_span_in_context(parent)
        return self.tracer.start_span(
            name, context=parent, kind=getattr(self.kinds, kind),
            attributes={k: v for k, v in attributes.items() if v is not None},
            start_time=None if start_time is None else int(start_time * 1e9))

    def current(self, span: Any) -> Any:
        """``with tracing.current(span):`` the span is the current one (for spans the
        code inside makes)."""
        return self._trace.use_span(span, end_on_exit=False)

    def carrier(self, span: Any) -> dict[str, str]:
        """The span's W3C trace context: ``{"traceparent": ..., ["tracestate": ...]}``."""
        carrier: dict[str, str] = {}
        self.propagator.inject(carrier, context=self._trace.set_span_in_context(span))
        return carrier

    def parent(self, traceparent: str | None, tracestate: str | None) -> Any:
        """The Context a job's envelope carries (None: it starts a trace of its own)."""
        if not traceparent:
            return None
        carrier = {"traceparent": traceparent}
        if tracestate:
            carrier["tracestate"] = tracestate
        extracted = self.propagator.extract(carrier)
        span = self._trace.get_current_span(extracted)
        return extracted if span.get_span_context().is_valid else None

    def environment(self, span: Any) -> dict[str, str]:
        """What a command gets: TRACEPARENT (and TRACESTATE) of ``span``."""
        carrier = self.carrier(span)
        return command_environment(carrier.get("traceparent"), carrier.get("tracestate"))

    def end(self, span: Any, result: Any = None, error: str | None = None,
            **attributes: Any) -> None:
        """End ``span``, with a Result's status (an error status unless ok), or an
        ``error`` status when there is no Result."""
        if result is not None:
            attributes.setdefault("gearman_frame.status", result.status)
            attributes.setdefault("gearman_frame.exit_code", result.exit_code)
            attributes.setdefault("gearman_frame.attempts", result.attempts)
        for key, value in attributes.items():
            if value is not None:
                span.set_attribute(key, value)
        if result is not None and not result.ok:
            error = str(result.error or result.status)
        if error is not None:
            from opentelemetry.trace import Status, StatusCode
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()

    def close(self) -> None:
        """Send what is left, waiting at most EXIT_WAIT seconds (a collector that is down
        costs no more than that at exit)."""
        done = threading.Thread(target=self.provider.shutdown, daemon=True)
        done.start()
        done.join(EXIT_WAIT)
