"""The real runtime in-process (HTTP app, delivery router, AppCallback gRPC server, Dapr outputs) with
the tracing plugin exporting to the SDK's in-memory exporter."""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from dapr.proto import appcallback_service_v1
from funcd_tracing import TracingPlugin
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from werkzeug.test import Client

from functions_framework.dapr_client import SidecarAddress
from functions_framework.invocation import Invoker
from functions_framework.model import FunctionContext, parse_context_text
from functions_framework.outputs import DaprOutputs
from functions_framework.plugins import Hooks
from functions_framework.runtime.dapr_http import DaprHttpRoutes
from functions_framework.runtime.delivery import Router
from functions_framework.runtime.http import HttpApp
from functions_framework.runtime.lifecycle import Lifecycle
from functions_framework.runtime_context import RuntimeContext
from functions_framework.settings import Settings
from functions_framework.testing import load


@dataclass
class Traced:
    """A function served in-process with tracing."""

    plugin: TracingPlugin
    exporter: InMemorySpanExporter
    invoker: Invoker
    app: HttpApp
    router: Router
    runtime_context: RuntimeContext
    servers: list[Any] = field(default_factory=list)

    @property
    def client(self) -> Client:
        return Client(self.app)

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        spans = list(self.exporter.get_finished_spans())
        return [s for s in spans if name is None or s.name == name]

    def span(self, name: str) -> ReadableSpan:
        found = self.spans(name)
        assert len(found) == 1, [s.name for s in self.spans()]
        return found[0]

    def appcallback(self) -> appcallback_service_v1.AppCallbackStub:
        """A client of the AppCallback gRPC server, started on first use."""
        from functions_framework.runtime.dapr import start_appcallback

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server, _ = start_appcallback(self.router, "127.0.0.1", port, 4)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=10)
        self.servers.append((server, channel))
        return appcallback_service_v1.AppCallbackStub(channel)

    def close(self) -> None:
        for server, channel in self.servers:
            channel.close()
            server.stop(0)
        self.runtime_context.close()
        self.plugin.provider.shutdown()


def traced(
    handler: Callable[..., Any],
    context: str | FunctionContext = "name: traced\n",
    *,
    environ: Mapping[str, str] | None = None,
    dapr_address: str | None = None,
    timeout: float | None = None,
    max_body: int = 1024 * 1024,
    install_globals: bool = False,
) -> Traced:
    """``install_globals``: as in a worker, also install the global propagator, the requests/httpx
    instrumentation and the log ids (undo with ``funcd_tracing.release_globals()``)."""
    ctx = parse_context_text(context, "test") if isinstance(context, str) else context
    loaded, _ = load(handler)
    exporter = InMemorySpanExporter()
    plugin = TracingPlugin(
        ctx,
        environ=environ or {},
        span_processor=SimpleSpanProcessor(exporter),
        install_globals=install_globals,
    )
    hooks = Hooks(pre=(plugin,), post=(plugin,), plugins=(plugin,))
    settings = Settings(
        workers=1,
        timeout=timeout,
        max_body=max_body,
        dapr_address=SidecarAddress(dapr_address) if dapr_address else None,
    )
    outputs = DaprOutputs(ctx, dapr_address, hooks.outbound) if dapr_address else None
    rctx = RuntimeContext(ctx, outputs, settings, hooks)
    invoker = Invoker(loaded.adapter, rctx, hooks, timeout)
    lifecycle = Lifecycle()
    router = Router(ctx, invoker, settings, lifecycle)
    app = HttpApp(invoker, settings, lifecycle, DaprHttpRoutes(router) if ctx.inputs else None)
    return Traced(plugin, exporter, invoker, app, router, rctx)


def hex_trace(span: ReadableSpan) -> str:
    return format(span.context.trace_id, "032x")


def hex_span(span: ReadableSpan) -> str:
    return format(span.context.span_id, "016x")
