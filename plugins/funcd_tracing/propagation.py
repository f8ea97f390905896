"""Trace context in and out: W3C ``traceparent``/``tracestate``/``baggage``, plus ``sw8`` (SkyWalking).

Inbound, the carrier is the event's ``trace_carrier`` (HTTP headers, gRPC metadata, CloudEvent
extensions) with ``sw8`` from the headers or extensions. ``sw8`` is read first and ``traceparent`` after
it, so a valid ``traceparent`` wins and ``sw8`` continues a trace only when there is none.

Outbound, ``traceparent``/``tracestate``/``baggage`` (and ``sw8`` for the ``skywalking`` provider) go
into the gRPC metadata of the call to daprd. daprd's gRPC interceptor continues the trace from the
``traceparent`` metadata (``grpc-trace-bin`` first, which we never send) with its own client span, and
writes that span's ``traceparent``/``tracestate`` into the CloudEvent it publishes. Nothing goes into the
Dapr request metadata: plain ``traceparent`` there is not read by daprd, and ``cloudevent.traceparent``
would replace daprd's span in the envelope and cut it out of the trace.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from functions_framework.event import Event

from .config import TracingConfig
from .sw8 import HEADER as SW8
from .sw8 import Sw8Propagator


def build_propagator(config: TracingConfig) -> TextMapPropagator:
    """What the plugin reads and writes: sw8 (read always, written for skywalking), W3C, baggage."""
    sw8 = Sw8Propagator(config.service_name, config.resource.get("service.instance.id", ""))
    w3c: list[TextMapPropagator] = [TraceContextTextMapPropagator(), W3CBaggagePropagator()]
    if config.provider == "skywalking":
        return CompositePropagator([sw8, *w3c])
    return CompositePropagator([_ReadOnly(sw8), *w3c])


class _ReadOnly(TextMapPropagator):
    """A propagator that extracts and never injects (``sw8`` when the provider is not SkyWalking)."""

    def __init__(self, inner: TextMapPropagator) -> None:
        self.inner = inner

    def extract(
        self, carrier: CarrierT, context: Context | None = None, getter: Getter[CarrierT] = default_getter
    ) -> Context:
        return self.inner.extract(carrier, context, getter)

    def inject(
        self, carrier: CarrierT, context: Context | None = None, setter: Setter[CarrierT] = default_setter
    ) -> None:
        return None

    @property
    def fields(self) -> set[str]:
        return set()


def event_carrier(event: Event) -> dict[str, str]:
    """The inbound trace carrier of an event, with ``sw8`` when it came with one."""
    carrier = event.trace_carrier
    environ = event.environ  # an HTTP request: one environ key, not every header
    sw8 = (
        environ.get("HTTP_SW8") if environ is not None else event.headers.get(SW8)
    ) or event.extensions.get(SW8)
    if sw8:
        carrier[SW8] = str(sw8)
    return carrier


def headers_carrier(headers: Mapping[str, str]) -> dict[str, str]:
    """The trace keys of a refused request's headers."""
    keys = ("traceparent", "tracestate", "baggage", SW8)
    return {k: str(headers[k]) for k in keys if headers.get(k)}


def extract(propagator: TextMapPropagator, carrier: Mapping[str, str]) -> Context:
    """The parent context the carrier names (an empty context when it names none)."""
    return propagator.extract(dict(carrier), Context())
