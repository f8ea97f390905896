"""A protocol fake of an OpenTelemetry collector's trace receiver: OTLP over gRPC and over HTTP/protobuf.

Both are real servers on 127.0.0.1, ephemeral ports, built on the official ``opentelemetry-proto``
messages and gRPC stubs. They record every ``ExportTraceServiceRequest`` with the headers (gRPC
metadata) it came with; ``spans()`` flattens them to (resource attributes, span) pairs, and
``wait_for(predicate)`` waits (bounded) until a span matching it arrives.

``Silent`` is a TCP listener that accepts connections and never answers: a collector that hangs.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

__all__ = ["Export", "OtlpCollector", "Silent", "attributes"]


@dataclass(frozen=True)
class Export:
    """One export request, as received."""

    request: Any
    """The ExportTraceServiceRequest."""
    headers: dict[str, str]
    """gRPC metadata or HTTP headers, lower-case names."""


def attributes(attrs: Any) -> dict[str, Any]:
    """OTLP KeyValue list → dict of plain values."""
    out: dict[str, Any] = {}
    for kv in attrs:
        value = kv.value
        out[kv.key] = getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None
    return out


class OtlpCollector(trace_service_pb2_grpc.TraceServiceServicer):
    """Receives OTLP traces over gRPC (``grpc_endpoint``) and HTTP (``http_endpoint``)."""

    def __init__(self) -> None:
        self.exports: list[Export] = []
        self._lock = threading.Lock()
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._grpc)
        self.grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _http_handler(self))
        self.http_port = self._http.server_address[1]

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> OtlpCollector:
        self._grpc.start()
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._grpc.stop(0)
        self._http.shutdown()
        self._http.server_close()

    def record(self, request: Any, headers: dict[str, str]) -> None:
        with self._lock:
            self.exports.append(Export(request, headers))

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.record(request, {k: v for k, v in context.invocation_metadata() if isinstance(v, str)})
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[tuple[dict[str, Any], Any, dict[str, str]]]:
        """Every span received: (resource attributes, span, headers of its export)."""
        with self._lock:
            exports = list(self.exports)
        out = []
        for export in exports:
            for resource_spans in export.request.resource_spans:
                resource = attributes(resource_spans.resource.attributes)
                for scope in resource_spans.scope_spans:
                    out.extend((resource, span, export.headers) for span in scope.spans)
        return out

    def wait_for(
        self, predicate: Callable[[Any], bool], timeout: float = 10.0
    ) -> tuple[dict[str, Any], Any, dict[str, str]]:
        deadline = time.monotonic() + timeout
        while True:
            for item in self.spans():
                if predicate(item[1]):
                    return item
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"no matching span within {timeout}s; got {[s.name for _, s, _ in self.spans()]}"
                )
            time.sleep(0.02)


def _http_handler(collector: OtlpCollector) -> type[BaseHTTPRequestHandler]:
    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if self.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            request = trace_service_pb2.ExportTraceServiceRequest()
            if self.path != "/v1/traces":
                self.send_response(404)
                self.end_headers()
                return
            request.ParseFromString(body)
            collector.record(request, {k.lower(): v for k, v in self.headers.items()})
            reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Receiver


class Silent:
    """Accepts TCP connections and never answers (a hung collector)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def stop(self) -> None:
        self._stop = True
        self.sock.close()
        for conn in self.conns:
            conn.close()
