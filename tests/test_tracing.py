"""The tracing plugin in the real runtime (in-process): spans per HTTP call, per Dapr delivery, per refused
request and per call to the sidecar; context in handlers; propagation in and out; log ids."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import grpc
import httpx
import pytest
import requests
from dapr.proto import appcallback_v1
from funcd_tracing import release_globals
from google.protobuf import struct_pb2
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

import functions_framework as ff
from functions_framework.logs import JsonFormatter
from functions_framework.runtime.http import EXECUTION_ID_HEADER
from tests.tracing_support import hex_span, hex_trace, traced

if TYPE_CHECKING:
    from tests.fakes.dapr_api import DaprApiFake

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"

CONTEXT = """
name: traced
version: v2
inputs:
  orders: {componentName: msg, componentType: pubsub.redis, topic: orders}
  cron: {componentName: cron, componentType: bindings.cron}
outputs:
  next: {componentName: msg, componentType: pubsub.redis, topic: processed}
states:
  store: {componentName: statestore, componentType: state.redis}
tracing:
  enabled: true
  tags: {team: payments}
  baggage: {tenant: acme}
"""


def seen_span() -> dict[str, str]:
    ctx = trace.get_current_span().get_span_context()
    return {"trace": format(ctx.trace_id, "032x"), "span": format(ctx.span_id, "016x")}


def test_http_call_gets_a_server_span_continuing_the_inbound_trace():
    def handler(context, event):
        return seen_span()

    t = traced(handler, CONTEXT)
    try:
        r = t.client.post(
            "/orders?x=1", json={}, headers={"traceparent": TRACEPARENT, "host": "fn.local:8080"}
        )
        assert r.status_code == 200
        span = t.span("POST /orders")
        assert span.kind is SpanKind.SERVER
        assert hex_trace(span) == TRACE_ID and format(span.parent.span_id, "016x") == PARENT_ID
        assert span.parent.is_remote
        assert r.json == {"trace": TRACE_ID, "span": hex_span(span)}  # the handler saw its span
        attrs = dict(span.attributes)
        assert attrs["http.request.method"] == "POST" and attrs["url.path"] == "/orders"
        assert attrs["url.query"] == "x=1"
        assert attrs["server.address"] == "fn.local" and attrs["server.port"] == 8080
        assert attrs["http.response.status_code"] == 200 and attrs["funcd.reply"] == 200
        assert attrs["funcd.outcome"] == "success" and attrs["faas.trigger"] == "http"
        assert attrs["faas.invocation_id"] == r.headers[EXECUTION_ID_HEADER]
        assert attrs["team"] == "payments"
        assert span.status.status_code is StatusCode.UNSET
        res = dict(span.resource.attributes)
        assert (
            res["service.name"] == "traced" and res["faas.name"] == "traced" and res["faas.version"] == "v2"
        )
    finally:
        t.close()


def test_handler_errors_and_5xx_mark_the_span_as_failed():
    def handler(context, event):
        if event.path == "/boom":
            raise ValueError("bad thing")
        if event.path == "/503":
            return "down", 503
        return "fine", 404

    t = traced(handler, CONTEXT)
    try:
        assert t.client.get("/boom").status_code == 500
        assert t.client.get("/503").status_code == 503
        assert t.client.get("/404").status_code == 404
        boom = t.span("GET /boom")
        assert boom.status.status_code is StatusCode.ERROR and "bad thing" in boom.status.description
        assert [e.name for e in boom.events] == ["exception"]
        assert boom.events[0].attributes["exception.type"] == "ValueError"
        assert boom.attributes["funcd.outcome"] == "error"
        assert t.span("GET /503").status.status_code is StatusCode.ERROR
        assert t.span("GET /404").status.status_code is StatusCode.UNSET
    finally:
        t.close()


@pytest.mark.parametrize("kind", ["sync", "sync-timeout", "async"])
def test_the_handler_sees_the_invocation_span(kind):
    if kind == "async":

        async def handler(context, event):
            await asyncio.sleep(0)
            return seen_span()
    else:

        def handler(context, event):
            return seen_span()

    t = traced(handler, CONTEXT, timeout=5.0 if kind == "sync-timeout" else None)
    try:
        seen = []
        for _ in range(2):
            r = t.client.get("/", headers={"traceparent": TRACEPARENT})
            assert r.status_code == 200, r.data
            seen.append(r.json)
        spans = t.spans("GET /")
        assert seen == [{"trace": TRACE_ID, "span": hex_span(s)} for s in spans]
        # after the call, nothing stays attached in the calling thread
        assert not trace.get_current_span().get_span_context().is_valid
    finally:
        t.close()


def topic_request(event_id: str, extensions: dict[str, str]) -> appcallback_v1.TopicEventRequest:
    ext = struct_pb2.Struct()
    ext.update(extensions)
    return appcallback_v1.TopicEventRequest(
        id=event_id,
        source="tests",
        type="com.example",
        spec_version="1.0",
        data_content_type="application/json",
        data=json.dumps({"n": 1}).encode(),
        topic="orders",
        pubsub_name="msg",
        extensions=ext,
    )


def test_a_pubsub_delivery_over_appcallback_gets_a_consumer_span(dapr_api: DaprApiFake):
    def handler(context, event):
        if event.trigger.kind == "pubsub" and event.data.get("n") == 1:
            context.send({"ok": True}, output="next")
            return None
        raise ff.Retry()

    t = traced(handler, CONTEXT, dapr_address=dapr_api.address)
    try:
        stub = t.appcallback()
        reply = stub.OnTopicEvent(topic_request("ev-1", {"traceparent": TRACEPARENT}))
        assert reply.status == appcallback_v1.TopicEventResponse.SUCCESS
        span = t.span("orders process")
        assert span.kind is SpanKind.CONSUMER and hex_trace(span) == TRACE_ID
        attrs = dict(span.attributes)
        assert attrs["messaging.system"] == "dapr" and attrs["messaging.destination.name"] == "orders"
        assert attrs["messaging.operation"] == "process" and attrs["messaging.message.id"] == "ev-1"
        assert attrs["faas.trigger"] == "pubsub" and attrs["funcd.reply"] == "SUCCESS"
        # the publish: a PRODUCER span, child of the delivery's, whose context daprd gets as gRPC metadata
        producer = t.span("processed publish")
        assert producer.kind is SpanKind.PRODUCER and producer.parent.span_id == span.context.span_id
        assert producer.end_time is not None and producer.end_time <= span.end_time
        md = next(c.grpc_metadata for c in dapr_api.calls if c.method == "PublishEvent")
        assert md["traceparent"] == f"00-{TRACE_ID}-{hex_span(producer)}-01"
        assert "tenant=acme" in md["baggage"]
        assert "sw8" not in md  # only the skywalking provider writes sw8
        assert "traceparent" not in dapr_api.published[0].metadata
        # gRPC metadata as the inbound carrier, and a RETRY
        call = stub.OnTopicEvent.with_call(
            appcallback_v1.TopicEventRequest(
                id="ev-2", topic="orders", pubsub_name="msg", data=b"{}", data_content_type="application/json"
            ),
            metadata=(("traceparent", f"00-{'1' * 32}-{PARENT_ID}-01"),),
        )
        assert call[0].status == appcallback_v1.TopicEventResponse.RETRY
        retried = next(s for s in t.spans("orders process") if s.attributes["messaging.message.id"] == "ev-2")
        assert hex_trace(retried) == "1" * 32 and retried.attributes["funcd.outcome"] == "retry"
    finally:
        t.close()


def test_a_cloudevent_over_the_http_app_protocol_continues_its_envelope_trace():
    def handler(context, event):
        return None

    t = traced(handler, CONTEXT)
    try:
        envelope = {
            "specversion": "1.0",
            "id": "h-1",
            "source": "s",
            "type": "t",
            "datacontenttype": "application/json",
            "data": {"n": 1},
            "topic": "orders",
            "pubsubname": "msg",
            "traceparent": TRACEPARENT,
            "tracestate": "vendor=x",
        }
        r = t.client.post(
            "/dapr/topics/orders",
            data=json.dumps(envelope),
            headers={"content-type": "application/cloudevents+json"},
        )
        assert r.json == {"status": "SUCCESS"}
        span = t.span("orders process")
        assert hex_trace(span) == TRACE_ID and format(span.parent.span_id, "016x") == PARENT_ID
        assert span.parent.trace_state.get("vendor") == "x"
        assert span.attributes["messaging.message.id"] == "h-1"
    finally:
        t.close()


def test_a_binding_delivery_is_a_datasource_trigger():
    def handler(context, event):
        return None

    t = traced(handler, CONTEXT)
    try:
        stub = t.appcallback()
        stub.OnBindingEvent(appcallback_v1.BindingEventRequest(name="cron", data=b"", metadata={}))
        span = t.span("cron process")
        assert span.attributes["faas.trigger"] == "datasource"
        assert span.attributes["messaging.destination.name"] == "cron"
    finally:
        t.close()


def test_state_calls_get_client_spans_and_sidecar_failures_are_recorded(dapr_api: DaprApiFake):
    def handler(context, event):
        context.state("store").save("k", {"v": 1})
        try:
            context.send({"x": 1}, output="next")
        except ff.OutputError:
            return "publish failed", 502
        return "ok"

    t = traced(handler, CONTEXT, dapr_address=dapr_api.address)
    try:
        dapr_api.fail_next("PublishEvent", grpc.StatusCode.INVALID_ARGUMENT)
        assert t.client.get("/", headers={"traceparent": TRACEPARENT}).status_code == 502
        root = t.span("GET /")
        save = t.span("statestore save")
        assert save.kind is SpanKind.CLIENT and save.parent.span_id == root.context.span_id
        assert save.attributes["db.operation.name"] == "save"
        md = next(c.grpc_metadata for c in dapr_api.calls if c.method == "SaveState")
        assert md["traceparent"] == f"00-{TRACE_ID}-{hex_span(save)}-01"
        failed = t.span("processed publish")
        assert failed.status.status_code is StatusCode.ERROR
        assert failed.events[0].attributes["exception.type"].endswith("OutputError")
    finally:
        t.close()


def test_a_refused_request_gets_an_error_span_with_its_parent():
    t = traced(lambda context, event: "ok", CONTEXT, max_body=16)
    try:
        r = t.client.post("/up", data=b"x" * 100, headers={"traceparent": TRACEPARENT})
        assert r.status_code == 413
        span = t.span("POST /up")
        assert hex_trace(span) == TRACE_ID and format(span.parent.span_id, "016x") == PARENT_ID
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes["funcd.rejected.reason"] == "too_large"
        assert span.attributes["http.response.status_code"] == 413
        assert span.attributes["team"] == "payments"
    finally:
        t.close()


def test_a_refused_delivery_gets_an_error_span_with_its_parent():
    t = traced(lambda context, event: None, CONTEXT, max_body=16)
    try:
        stub = t.appcallback()
        request = topic_request("big-1", {})
        request.data = b"x" * 100
        reply = stub.OnTopicEvent(request, metadata=(("traceparent", TRACEPARENT),))
        assert reply.status == appcallback_v1.TopicEventResponse.DROP
        span = t.span("orders process")
        assert hex_trace(span) == TRACE_ID and span.status.status_code is StatusCode.ERROR
        assert span.attributes["funcd.rejected.reason"] == "too_large"
        assert span.attributes["funcd.reply"] == "DROP"
    finally:
        t.close()


class _Recorder(BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:
        _Recorder.seen.append({k.lower(): v for k, v in self.headers.items()})
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize("client", ["requests", "httpx", "httpx-async"])
def test_http_calls_made_in_a_handler_join_the_trace(client):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/downstream"

    if client == "requests":

        def handler(context, event):
            return str(requests.get(url, timeout=5).status_code)
    elif client == "httpx":

        def handler(context, event):
            with httpx.Client() as http:
                return str(http.get(url, timeout=5).status_code)
    else:

        async def handler(context, event):
            async with httpx.AsyncClient() as http:
                return str((await http.get(url, timeout=5)).status_code)

    t = traced(handler, CONTEXT, install_globals=True)
    try:
        assert t.client.get("/", headers={"traceparent": TRACEPARENT}).status_code == 200
        inbound = _Recorder.seen[-1]
        assert inbound["traceparent"].split("-")[1] == TRACE_ID == hex_trace(t.span("GET /"))
        assert "tenant=acme" in inbound["baggage"]
    finally:
        release_globals()
        t.close()
        server.shutdown()
        server.server_close()


def test_log_lines_carry_the_active_span_ids():
    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            pass

    def handler(context, event):
        context.logger.warning("inside")
        return "ok"

    t = traced(handler, CONTEXT, install_globals=True)
    logger = logging.getLogger("function.traced")
    keep = Keep()
    logger.addHandler(keep)
    formatter = JsonFormatter("traced")
    try:
        lines: list[dict] = []  # formatted while emitted, in the call, as a log handler does
        keep.emit = lambda record: lines.append(json.loads(formatter.format(record)))  # type: ignore[method-assign]
        assert t.client.get("/", headers={"traceparent": TRACEPARENT}).status_code == 200
        span = t.span("GET /")
        line = next(x for x in lines if x["message"] == "inside")
        assert line["trace_id"] == TRACE_ID and line["span_id"] == hex_span(span)
        outside = json.loads(formatter.format(logging.LogRecord("x", 20, "", 0, "after", (), None)))
        assert "trace_id" not in outside and "span_id" not in outside
    finally:
        release_globals()
        logger.removeHandler(keep)
        t.close()


def test_the_sampler_setting_applies():
    t = traced(lambda context, event: seen_span(), CONTEXT, environ={"OTEL_TRACES_SAMPLER": "always_off"})
    try:
        r = t.client.get("/", headers={"traceparent": TRACEPARENT})
        assert r.status_code == 200 and t.spans() == []
        assert r.json["trace"] == TRACE_ID  # not recorded, still propagated
    finally:
        t.close()


def test_otel_sdk_disabled_makes_no_spans():
    t = traced(lambda context, event: seen_span(), CONTEXT, environ={"OTEL_SDK_DISABLED": "true"})
    try:
        r = t.client.get("/", headers={"traceparent": TRACEPARENT})
        assert r.status_code == 200 and t.spans() == []
    finally:
        t.close()
