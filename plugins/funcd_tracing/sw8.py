"""SkyWalking's cross-process header ``sw8`` (format v3), read and written as an OpenTelemetry propagator.

Format: ``<sample>-<b64 traceId>-<b64 parentSegmentId>-<parentSpanId>-<b64 service>-<b64 instance>-
<b64 endpoint>-<b64 peer>``; ``sample`` is ``1`` (sampled) or ``0``, the span id a decimal integer, the
other fields base64 (standard alphabet, with padding) of UTF-8 text.

How SkyWalking's ids map to W3C ids (deterministic, so every service that reads the same ``sw8`` agrees):

- trace id: a 32 hex digit SkyWalking trace id (what we write) is the W3C trace id itself; any other
  text becomes the first 16 bytes of its SHA-256.
- parent span id: when the segment id is 16 hex digits and the span id ``0`` (what we write), the
  segment id is the W3C span id; otherwise the first 8 bytes of the SHA-256 of ``<segment>-<spanId>``.
- the sample flag becomes the W3C ``sampled`` flag.

What we write: the W3C trace id (hex) as the trace id, the hex id of the span that calls out as the
segment id, ``0`` as the span id, the service name and instance, the endpoint (the invocation's span
name) and the peer (what is called, e.g. ``daprd``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)

HEADER = "sw8"
ENDPOINT_KEY = otel_context.create_key("funcd-sw8-endpoint")
"""Context key: the endpoint name written into ``sw8`` (the invocation's span name)."""
PEER_KEY = otel_context.create_key("funcd-sw8-peer")
"""Context key: the peer written into ``sw8`` (what the outbound call reaches)."""
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX16 = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True)
class Sw8:
    """The fields of one ``sw8`` header."""

    sampled: bool
    """The sample flag."""
    trace_id: str
    """SkyWalking's trace id (text)."""
    segment_id: str
    """The parent segment's id (text)."""
    span_id: int
    """The parent span's id inside its segment."""
    service: str
    """The parent's service name."""
    instance: str
    """The parent's service instance."""
    endpoint: str
    """The parent's endpoint (its entry operation)."""
    peer: str
    """The address the parent called."""

    def encode(self) -> str:
        texts = (self.trace_id, self.segment_id)
        names = (self.service, self.instance, self.endpoint, self.peer)
        return "-".join(
            ["1" if self.sampled else "0", *map(_b64, texts), str(self.span_id), *map(_b64, names)]
        )

    def w3c_ids(self) -> tuple[int, int]:
        """(trace id, parent span id) as W3C integers, by the mapping in the module docstring."""
        if _HEX32.match(self.trace_id) and int(self.trace_id, 16):
            trace_id = int(self.trace_id, 16)
        else:
            trace_id = _digest(self.trace_id, 16)
        if self.span_id == 0 and _HEX16.match(self.segment_id) and int(self.segment_id, 16):
            span_id = int(self.segment_id, 16)
        else:
            span_id = _digest(f"{self.segment_id}-{self.span_id}", 8)
        return trace_id, span_id


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _unb64(text: str) -> str:
    return base64.b64decode(text.encode("ascii"), validate=True).decode("utf-8")


def _digest(text: str, size: int) -> int:
    value = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:size], "big")
    return value or 1


def parse(header: str) -> Sw8 | None:
    """The fields of an ``sw8`` header, or None when it is not a valid v3 header."""
    parts = header.strip().split("-")
    if len(parts) != 8 or parts[0] not in ("0", "1") or not parts[3].isdigit():
        return None
    try:
        trace_id, segment_id = _unb64(parts[1]), _unb64(parts[2])
        service, instance, endpoint, peer = (_unb64(p) for p in parts[4:])
    except (binascii.Error, ValueError):
        return None
    if not trace_id or not segment_id:
        return None
    return Sw8(parts[0] == "1", trace_id, segment_id, int(parts[3]), service, instance, endpoint, peer)


class Sw8Propagator(TextMapPropagator):
    """Extracts a parent from ``sw8`` and injects ``sw8`` for the current span."""

    def __init__(self, service: str, instance: str) -> None:
        self.service = service
        self.instance = instance

    def extract(
        self, carrier: CarrierT, context: Context | None = None, getter: Getter[CarrierT] = default_getter
    ) -> Context:
        if context is None:
            context = Context()
        values = getter.get(carrier, HEADER)
        header = parse(values[0]) if values else None
        if header is None:
            return context
        trace_id, span_id = header.w3c_ids()
        flags = trace.TraceFlags(trace.TraceFlags.SAMPLED if header.sampled else trace.TraceFlags.DEFAULT)
        parent = trace.SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags)
        return trace.set_span_in_context(trace.NonRecordingSpan(parent), context)

    def inject(
        self, carrier: CarrierT, context: Context | None = None, setter: Setter[CarrierT] = default_setter
    ) -> None:
        span_context = trace.get_current_span(context).get_span_context()
        if not span_context.is_valid:
            return
        endpoint = otel_context.get_value(ENDPOINT_KEY, context) or self.service
        peer = otel_context.get_value(PEER_KEY, context) or "unknown"
        header = Sw8(
            sampled=span_context.trace_flags.sampled,
            trace_id=trace.format_trace_id(span_context.trace_id),
            segment_id=trace.format_span_id(span_context.span_id),
            span_id=0,
            service=self.service,
            instance=self.instance,
            endpoint=str(endpoint),
            peer=str(peer),
        )
        setter.set(carrier, HEADER, header.encode())

    @property
    def fields(self) -> set[str]:
        return {HEADER}
