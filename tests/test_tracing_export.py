"""Spans leave a real ``funcd run`` server over OTLP (gRPC and HTTP/protobuf) to a collector fake; a dead or
hung collector changes nothing for callers, and workers still exit in bounded time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests.fakes.otlp import OtlpCollector, Silent, attributes
from tests.support import write_function

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"

HANDLER = """
import logging
log = logging.getLogger("function.exported")

def handler(context, event):
    log.info("handling %s", event.path)
    return {"ok": True}
"""


def function_yaml(endpoint: str, protocol: str = "grpc", extra: str = "") -> str:
    return f"""
name: exported
version: "3"
tracing:
  enabled: true
  provider:
    name: opentelemetry
    exporter: {{endpoint: "{endpoint}", protocol: "{protocol}", headers: "x-api-key=k1", timeout: 1s{extra}}}
  tags: {{team: payments}}
"""


@pytest.fixture
def collector() -> Iterator[OtlpCollector]:
    c = OtlpCollector().start()
    yield c
    c.stop()


ENV = {"POD_NAME": "exported-5f7-xyz", "POD_NAMESPACE": "shop"}


def test_spans_reach_an_otlp_grpc_collector_with_resource_and_headers(funcd, tmp_path, collector):
    folder = write_function(tmp_path / "f", HANDLER, function_yaml(collector.grpc_endpoint))
    server = funcd(str(folder), env=ENV)
    r = requests.get(server.url + "/hello", headers={"traceparent": TRACEPARENT})
    assert r.status_code == 200
    resource, span, headers = collector.wait_for(lambda s: s.name == "GET /hello")
    assert span.trace_id.hex() == TRACE_ID
    attrs = attributes(span.attributes)
    assert attrs["http.response.status_code"] == 200 and attrs["team"] == "payments"
    assert resource["service.name"] == "exported" and resource["faas.version"] == "3"
    assert resource["k8s.pod.name"] == "exported-5f7-xyz" and resource["k8s.namespace.name"] == "shop"
    assert resource["faas.instance"] == "exported-5f7-xyz"
    assert headers["x-api-key"] == "k1"
    # the JSON log line written in the handler carries the span's ids
    line = server.wait_for_log(lambda x: x.get("message") == "handling /hello")
    assert line["trace_id"] == TRACE_ID and line["span_id"] == span.span_id.hex()


def test_spans_reach_an_otlp_http_collector_gzipped(funcd, tmp_path, collector):
    yaml = function_yaml(collector.http_endpoint, "http/protobuf", ", compression: gzip")
    folder = write_function(tmp_path / "f", HANDLER, yaml)
    server = funcd(str(folder), env=ENV)
    assert requests.get(server.url + "/h", headers={"traceparent": TRACEPARENT}).status_code == 200
    _, span, headers = collector.wait_for(lambda s: s.name == "GET /h")
    assert span.trace_id.hex() == TRACE_ID
    assert headers["content-encoding"] == "gzip" and headers["x-api-key"] == "k1"


def test_the_last_spans_are_flushed_when_the_worker_stops(funcd, tmp_path, collector):
    folder = write_function(tmp_path / "f", HANDLER, function_yaml(collector.grpc_endpoint))
    server = funcd(str(folder), env=ENV)
    assert requests.get(server.url + "/last").status_code == 200
    assert server.stop(timeout=20) == 0
    collector.wait_for(lambda s: s.name == "GET /last", timeout=2)


@pytest.mark.parametrize("collector_kind", ["nothing-listens", "never-answers"])
def test_a_dead_collector_changes_nothing_for_callers(funcd, tmp_path, collector_kind):
    silent = Silent()
    if collector_kind == "nothing-listens":
        port = silent.port
        silent.stop()  # the port is now closed: connections are refused
    else:
        port = silent.port
    try:
        folder = write_function(tmp_path / "f", HANDLER, function_yaml(f"http://127.0.0.1:{port}"))
        server = funcd(str(folder), env=ENV)
        slowest = 0.0
        for i in range(30):
            started = time.monotonic()
            r = requests.get(f"{server.url}/n{i}", headers={"traceparent": TRACEPARENT}, timeout=5)
            slowest = max(slowest, time.monotonic() - started)
            assert r.status_code == 200 and r.json() == {"ok": True}
        assert slowest < 0.5, f"a call took {slowest:.3f}s with a dead collector"
        started = time.monotonic()
        assert server.stop(timeout=20) == 0
        assert time.monotonic() - started < 10, "the worker's exit waited too long for the collector"
        assert "Traceback" not in server.output
    finally:
        if collector_kind == "never-answers":
            silent.stop()


CALLER = """
import requests

def handler(context, event):
    r = requests.get(event.headers["x-downstream"], timeout=5)
    return {"downstream": r.status_code}
"""


def test_a_worker_instruments_requests_so_calls_join_the_trace(funcd, tmp_path, collector):
    seen: list[dict[str, str]] = []

    class Recorder(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    downstream = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=downstream.serve_forever, daemon=True).start()
    try:
        folder = write_function(tmp_path / "f", CALLER, function_yaml(collector.grpc_endpoint))
        server = funcd(str(folder), env=ENV)
        url = f"http://127.0.0.1:{downstream.server_address[1]}/x"
        r = requests.get(server.url + "/call", headers={"traceparent": TRACEPARENT, "x-downstream": url})
        assert r.json() == {"downstream": 204}
        assert seen[-1]["traceparent"].split("-")[1] == TRACE_ID
        _, root, _ = collector.wait_for(lambda s: s.name == "GET /call")
        _, client, _ = collector.wait_for(lambda s: s.name == "GET" and s.parent_span_id == root.span_id)
        assert seen[-1]["traceparent"].split("-")[2] == client.span_id.hex()
    finally:
        downstream.shutdown()
        downstream.server_close()
