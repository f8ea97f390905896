"""SkyWalking's ``sw8`` header: our propagator against the SkyWalking Python agent's own carrier code."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from funcd_tracing.sw8 import ENDPOINT_KEY, PEER_KEY, Sw8, Sw8Propagator, parse
from opentelemetry import trace
from opentelemetry.context import Context
from skywalking.trace.carrier import Carrier

from tests.tracing_support import hex_span, hex_trace, traced

if TYPE_CHECKING:
    from tests.fakes.dapr_api import DaprApiFake

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"


def current(trace_id: str, span_id: str) -> Context:
    parent = trace.SpanContext(
        int(trace_id, 16), int(span_id, 16), is_remote=False, trace_flags=trace.TraceFlags(1)
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(parent))


def test_our_header_parses_with_skywalking_code():
    from opentelemetry import context as otel_context

    ctx = otel_context.set_value(ENDPOINT_KEY, "GET /orders", current(TRACE_ID, SPAN_ID))
    ctx = otel_context.set_value(PEER_KEY, "daprd", ctx)
    carrier: dict[str, str] = {}
    Sw8Propagator("orders-fn", "pod-1-7").inject(carrier, ctx)
    theirs = Carrier()
    theirs.val = carrier["sw8"]
    assert theirs.is_valid
    assert (theirs.trace_id, theirs.segment_id, theirs.span_id) == (TRACE_ID, SPAN_ID, "0")
    assert (theirs.service, theirs.service_instance) == ("orders-fn", "pod-1-7")
    assert (theirs.endpoint, theirs.client_address) == ("GET /orders", "daprd")
    assert theirs.val == carrier["sw8"]  # their writer gives back the same bytes


def test_their_header_parses_with_ours_and_maps_ids_deterministically():
    theirs = Carrier(
        trace_id="2a7b8c.45.17024566771230001",
        segment_id="2a7b8c.45.17024566771230000",
        span_id="3",
        service="gateway",
        service_instance="gw-1@10.0.0.7",
        endpoint="/checkout",
        client_address="orders:8080",
    )
    header = parse(theirs.val)
    assert header == Sw8(
        True,
        "2a7b8c.45.17024566771230001",
        "2a7b8c.45.17024566771230000",
        3,
        "gateway",
        "gw-1@10.0.0.7",
        "/checkout",
        "orders:8080",
    )
    ctx = Sw8Propagator("me", "i").extract({"sw8": theirs.val})
    parent = trace.get_current_span(ctx).get_span_context()
    assert parent.is_valid and parent.is_remote and parent.trace_flags.sampled
    assert (parent.trace_id, parent.span_id) == header.w3c_ids()
    again = trace.get_current_span(
        Sw8Propagator("other", "j").extract({"sw8": theirs.val})
    ).get_span_context()
    assert (again.trace_id, again.span_id) == (parent.trace_id, parent.span_id)


def test_round_trip_keeps_w3c_ids():
    carrier: dict[str, str] = {}
    Sw8Propagator("a", "b").inject(carrier, current(TRACE_ID, SPAN_ID))
    got = trace.get_current_span(Sw8Propagator("c", "d").extract(carrier)).get_span_context()
    assert format(got.trace_id, "032x") == TRACE_ID and format(got.span_id, "016x") == SPAN_ID


@pytest.mark.parametrize(
    "header",
    [
        "",
        "1-abc",
        "2-YQ==-Yg==-0-Yw==-ZA==-ZQ==-Zg==",
        "1-YQ==-Yg==-x-Yw==-ZA==-ZQ==-Zg==",
        "1-!!-Yg==-0-Yw==-ZA==-ZQ==-Zg==",
    ],
)
def test_invalid_headers_are_ignored(header):
    assert parse(header) is None
    ctx = Sw8Propagator("a", "b").extract({"sw8": header})
    assert not trace.get_current_span(ctx).get_span_context().is_valid


SKYWALKING = """
name: sw-fn
outputs:
  next: {componentName: msg, componentType: pubsub.redis, topic: processed}
tracing:
  enabled: true
  provider: {name: skywalking, oapServer: "oap.sw:11800"}
"""


def test_skywalking_provider_continues_sw8_and_writes_it_outbound(dapr_api: DaprApiFake):
    def handler(context, event):
        context.send({"x": 1}, output="next")
        return "ok"

    t = traced(handler, SKYWALKING, dapr_address=dapr_api.address)
    try:
        assert t.plugin.config.endpoint == "http://oap.sw:11800"
        inbound = Carrier(TRACE_ID, SPAN_ID, "0", "gateway", "gw-1", "/checkout", "sw-fn:8080")
        assert t.client.get("/pay", headers={"sw8": inbound.val}).status_code == 200
        root = t.span("GET /pay")
        assert hex_trace(root) == TRACE_ID and format(root.parent.span_id, "016x") == SPAN_ID
        producer = t.span("processed publish")
        md = next(c.grpc_metadata for c in dapr_api.calls if c.method == "PublishEvent")
        out = Carrier()
        out.val = md["sw8"]
        assert out.is_valid and out.trace_id == TRACE_ID and out.segment_id == hex_span(producer)
        assert (out.service, out.endpoint, out.client_address) == ("sw-fn", "GET /pay", "daprd")
        assert md["traceparent"] == f"00-{TRACE_ID}-{hex_span(producer)}-01"
        # a traceparent wins over sw8
        other = "1" * 32
        t.client.get("/w3c", headers={"sw8": inbound.val, "traceparent": f"00-{other}-{SPAN_ID}-01"})
        assert hex_trace(t.span("GET /w3c")) == other
    finally:
        t.close()
