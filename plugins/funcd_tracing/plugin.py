"""The ``tracing`` plugin: a span per call, per refused request and per call to the sidecar.

Built once per worker by its factory, ``TracingPlugin(context)``, which reads the environment through
``config.from_sources(context, os.environ)`` (the plugin's one read of the environment). Tests and
embedders pass ``span_processor=`` (e.g. a ``SimpleSpanProcessor(InMemorySpanExporter())``) or
``exporter=`` and ``environ=``.

Per call: ``pre_hook`` starts the invocation's span as a child of the inbound trace context and makes it
the current context (attached in the calling thread; the runtime hands context variables on to the
handler's thread or event loop), so ``opentelemetry.trace.get_current_span()`` in the handler returns it
and instrumented ``requests``/``httpx`` calls join the trace. ``post_hook`` records the outcome, ends
the span and detaches. The first plugin in a process also installs its provider and propagator as
OpenTelemetry's globals, instruments ``requests``/``httpx`` when their instrumentations are installed
(``pip install 'funcd[http-tracing]'``), and makes JSON log lines carry the active span's ids.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.propagate import set_global_textmap
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from functions_framework import logs
from functions_framework.invocation import Invocation, Outcome
from functions_framework.invocation import Status as CallStatus
from functions_framework.model import FunctionContext
from functions_framework.plugins import OutboundCall, Rejected, WorkerInfo

from . import export, spans
from .config import TracingConfig, from_sources
from .propagation import build_propagator, event_carrier, extract, headers_carrier
from .sw8 import ENDPOINT_KEY, PEER_KEY

log = logging.getLogger("funcd_tracing")

NAME = "tracing"
FLUSH_WAIT = 3.0
"""Seconds ``worker_stopping`` waits for the last spans to reach the collector."""
_globals_lock = threading.Lock()
_globals_installed = False
_EMPTY = Context()
UNSAMPLED = TraceFlags(TraceFlags.DEFAULT)
INVALID = trace.INVALID_SPAN_CONTEXT


@dataclass
class CallSpan:
    """The tracing state of one call (``invocation.state["tracing"]``)."""

    span: Span
    """The invocation's span."""
    context: Context
    """The context in which the handler runs (the span, baggage, sw8 endpoint)."""
    token: object
    """The token that detaches ``context`` in ``post_hook``."""


def _environment() -> Mapping[str, str]:
    """The process environment: the plugin's one read of it (see ``config``)."""
    return os.environ


def active_span_ids() -> tuple[str, str] | None:
    """The active span's (trace id, span id) in hex, or None: what JSON log lines carry."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return trace.format_trace_id(span_context.trace_id), trace.format_span_id(span_context.span_id)


def release_globals() -> None:
    """Undo what the first plugin of a process installed, where OpenTelemetry allows it: the
    ``requests``/``httpx`` instrumentation and the log ids (for tests and embedders; the global
    TracerProvider stays, as OpenTelemetry sets it once)."""
    global _globals_installed
    with _globals_lock:
        _globals_installed = False
    logs.set_span_ids(None)
    try:
        from opentelemetry.instrumentation.requests import RequestsInstrumentor

        RequestsInstrumentor().uninstrument()
    except ImportError:
        pass
    try:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor().uninstrument()
    except ImportError:
        pass


def instrument_http_clients(provider: TracerProvider) -> list[str]:
    """Instrument ``requests`` and ``httpx`` when their OpenTelemetry instrumentations are installed."""
    done: list[str] = []
    try:
        from opentelemetry.instrumentation.requests import RequestsInstrumentor

        RequestsInstrumentor().instrument(tracer_provider=provider)
        done.append("requests")
    except ImportError:
        pass
    except Exception as exc:  # a broken instrumentation must not stop the worker
        log.warning("tracing: requests not instrumented: %s: %s", type(exc).__name__, exc)
    try:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor().instrument(tracer_provider=provider)
        done.append("httpx")
    except ImportError:
        pass
    except Exception as exc:
        log.warning("tracing: httpx not instrumented: %s: %s", type(exc).__name__, exc)
    return done


class TracingPlugin:
    """OpenTelemetry tracing around every call (hook name ``tracing``)."""

    name = NAME

    def __init__(
        self,
        context: FunctionContext | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        span_processor: SpanProcessor | None = None,
        exporter: SpanExporter | None = None,
        install_globals: bool = True,
    ) -> None:
        self.context = context or FunctionContext()
        self.config: TracingConfig = from_sources(
            self.context, _environment() if environ is None else environ
        )
        """The effective settings."""
        self.enabled = self.config.enabled
        self.propagator = build_propagator(self.config)
        self.provider = (
            export.build_provider(self.config, span_processor, exporter) if self.enabled else TracerProvider()
        )
        """This worker's TracerProvider."""
        self.tracer = self.provider.get_tracer("funcd_tracing")
        self._root_rate = export.root_rate(self.config)
        self._silent = not (span_processor or exporter or self.config.endpoint)
        """No collector named: nothing is recorded; the inbound trace context is passed on as is."""
        self._ids = self.provider.id_generator
        self._sw8 = self.config.provider == "skywalking"
        self.tags = dict(self.config.tags)
        if self.enabled and install_globals:
            self._install_globals()

    @staticmethod
    def check(context: FunctionContext) -> None:
        """Refuse bad settings at start-up, in the supervisor (``PluginLoadError``)."""
        from_sources(context, _environment())

    def _install_globals(self) -> None:
        global _globals_installed
        with _globals_lock:
            if _globals_installed:
                return
            _globals_installed = True
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):  # settable once only
            trace.set_tracer_provider(self.provider)
        set_global_textmap(self.propagator)
        logs.set_span_ids(active_span_ids)
        instrumented = instrument_http_clients(self.provider)
        if instrumented:
            log.debug("tracing: instrumented %s", ", ".join(instrumented))

    # -- calls ---------------------------------------------------------------------------------------

    def _parent(self, carrier: Mapping[str, str]) -> Context:
        if not carrier and not self.config.baggage:
            return _EMPTY  # nothing to extract: a root span
        parent = extract(self.propagator, carrier)
        for key, value in self.config.baggage.items():
            parent = baggage.set_baggage(key, value, parent)
        return parent

    def pre_hook(self, invocation: Invocation) -> None:
        if not self.enabled:
            return
        event = invocation.event
        name, kind = spans.invocation_name(event)
        parent = self._parent(event_carrier(event))
        # Sampled first: a span that is not recorded costs no attributes (the samplers read none).
        span = self._start(name, parent, kind)
        if span.is_recording():
            span.set_attributes({**self.tags, **spans.invocation_attributes(event, invocation.execution_id)})
        ctx = trace.set_span_in_context(span, parent)
        if self._sw8:
            ctx = otel_context.set_value(ENDPOINT_KEY, name, ctx)
        invocation.state[NAME] = CallSpan(span, ctx, otel_context.attach(ctx))

    def _start(self, name: str, parent: Context, kind: SpanKind) -> Span:
        """The invocation's span. With a parent-based sampler, an unsampled call gets a non-recording
        span without the SDK's sampling machinery: it only carries the ids that go on to daprd."""
        if self._silent:
            inbound = INVALID if parent is _EMPTY else trace.get_current_span(parent).get_span_context()
            if inbound.is_valid:
                return NonRecordingSpan(inbound)  # calls to daprd carry the caller's context on
            return NonRecordingSpan(
                SpanContext(self._ids.generate_trace_id(), self._ids.generate_span_id(), False, UNSAMPLED)
            )
        rate = self._root_rate
        if rate is not None:
            inbound = INVALID if parent is _EMPTY else trace.get_current_span(parent).get_span_context()
            if inbound.is_valid:
                if not inbound.trace_flags.sampled:
                    return NonRecordingSpan(
                        SpanContext(inbound.trace_id, self._ids.generate_span_id(), False, UNSAMPLED,
                                    inbound.trace_state)
                    )  # fmt: skip
            elif rate < 1.0 and (rate <= 0.0 or random.random() >= rate):
                return NonRecordingSpan(
                    SpanContext(self._ids.generate_trace_id(), self._ids.generate_span_id(), False, UNSAMPLED)
                )
        return self.tracer.start_span(name, parent, kind)

    def post_hook(self, invocation: Invocation, outcome: Outcome) -> None:
        state = invocation.state.pop(NAME, None)
        if not isinstance(state, CallSpan):
            return
        span = state.span
        try:
            if not span.is_recording():
                return
            attrs: dict[str, str | int] = {"funcd.outcome": outcome.status.value}
            if outcome.reply is not None:
                attrs["funcd.reply"] = outcome.reply
            if outcome.entries is not None:  # a @batch call: one span, its parent the first event's
                attrs["messaging.batch.message_count"] = len(outcome.entries)
                for reply in ("SUCCESS", "RETRY", "DROP"):
                    attrs[f"funcd.batch.{reply.lower()}"] = sum(e.reply == reply for e in outcome.entries)
            server_error = False
            if isinstance(outcome.reply, int) and invocation.event.trigger.kind == "http":
                attrs["http.response.status_code"] = outcome.reply
                server_error = outcome.reply >= 500
            failed = outcome.status in (CallStatus.ERROR, CallStatus.TIMEOUT) or server_error
            if failed:
                if outcome.error is not None:
                    span.record_exception(outcome.error)
                    attrs["error.type"] = type(outcome.error).__qualname__
                elif server_error:
                    attrs["error.type"] = str(outcome.reply)
            span.set_attributes(attrs)
            if failed:
                span.set_status(Status(StatusCode.ERROR, _describe(outcome)))
        finally:
            span.end()
            otel_context.detach(state.token)  # type: ignore[arg-type]

    def rejected(self, request: Rejected) -> None:
        if not self.enabled:
            return
        name, kind, attrs = spans.rejected_span(request)
        parent = self._parent(headers_carrier(request.headers))
        span = self.tracer.start_span(name, parent, kind, {**self.tags, **attrs})
        span.set_status(Status(StatusCode.ERROR, request.message))
        span.end()

    def outbound(self, call: OutboundCall) -> None:
        if not self.enabled:
            return
        parent = otel_context.get_current()
        if not trace.get_current_span(parent).get_span_context().is_valid and call.invocation is not None:
            state = call.invocation.state.get(NAME)
            if isinstance(state, CallSpan):  # sent from a thread the handler started
                parent = state.context
        name, kind, attrs = spans.outbound_span(call)
        span = self.tracer.start_span(name, parent, kind, {**self.tags, **attrs})
        ctx = otel_context.set_value(PEER_KEY, "daprd", trace.set_span_in_context(span, parent))
        self.propagator.inject(call.headers, ctx)

        def finish(error: BaseException | None) -> None:
            if error is not None:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, str(error)))
            span.end()

        call.on_done.append(finish)

    # -- worker --------------------------------------------------------------------------------------

    def worker_started(self, worker: WorkerInfo) -> None:
        tracing = self.context.tracing
        exporter = tracing.exporter.name if tracing and tracing.exporter else ""
        if self.enabled and exporter not in ("", "otlp", "jaeger"):
            log.warning(
                "tracing.provider.exporter.name is %r: the runtime exports OTLP only (to %s); "
                "the name applies to the Dapr sidecar's configuration",
                exporter,
                self.config.endpoint,
            )
        if self.enabled and self._silent:
            log.info(
                "tracing: no collector named (tracing.provider.exporter.endpoint or "
                "OTEL_EXPORTER_OTLP_ENDPOINT): no span is exported; trace ids still reach logs and daprd"
            )
        elif self.enabled:
            log.debug(
                "tracing: exporting to %s over %s as %r",
                self.config.endpoint,
                self.config.protocol,
                self.config.service_name,
            )

    def worker_stopping(self) -> None:
        """Flush the last spans (at most ``FLUSH_WAIT`` seconds) and stop the exporter."""
        export.shutdown(self.provider, min(FLUSH_WAIT, self.config.timeout))


def _describe(outcome: Outcome) -> str:
    if outcome.error is not None:
        return f"{type(outcome.error).__name__}: {outcome.error}"
    return f"{outcome.status.value} ({outcome.reply})"
