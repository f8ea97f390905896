"""What each span is called and carries: HTTP and messaging semantic conventions, FaaS attributes.

- An HTTP invocation: a SERVER span ``METHOD path`` with ``http.request.method``, ``url.path``,
  ``url.scheme``, ``server.address``/``server.port`` (from the request), ``http.response.status_code``.
- A Dapr delivery: a CONSUMER span ``<topic> process`` (pub/sub) or ``<binding> process`` with
  ``messaging.system=dapr``, ``messaging.destination.name``, ``messaging.operation=process``,
  ``messaging.message.id`` (the CloudEvent id).
- Every invocation: ``faas.trigger`` (``http``, ``pubsub``, ``datasource`` for bindings),
  ``faas.invocation_id`` (the execution id), and at the end ``funcd.outcome`` / ``funcd.reply``.
- An outbound call: a PRODUCER span ``<topic> publish`` or a CLIENT span ``<component> <operation>``.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import SpanKind

from functions_framework.event import Event
from functions_framework.plugins import OutboundCall, Rejected

Attributes = dict[str, Any]

FAAS_TRIGGER = {"http": "http", "pubsub": "pubsub", "binding": "datasource"}


def invocation_span(event: Event, execution_id: str) -> tuple[str, SpanKind, Attributes]:
    """Name, kind and start attributes of an invocation's span."""
    kind = event.trigger.kind
    attrs: Attributes = {"faas.trigger": FAAS_TRIGGER[kind], "faas.invocation_id": execution_id}
    if kind == "http":
        method = event.method or "GET"
        path = event.path or "/"
        attrs.update({"http.request.method": method, "url.path": path})
        if event.query_string:
            attrs["url.query"] = event.query_string
        attrs.update(_server(event))
        agent = event.headers.get("user-agent")
        if agent:
            attrs["user_agent.original"] = agent
        return f"{method} {path}", SpanKind.SERVER, attrs
    destination = event.topic if kind == "pubsub" else (event.binding or event.trigger.name)
    destination = destination or event.trigger.name
    attrs.update(
        {
            "messaging.system": "dapr",
            "messaging.destination.name": destination,
            "messaging.operation": "process",
            "funcd.input": event.trigger.name,
        }
    )
    if event.id:
        attrs["messaging.message.id"] = event.id
    if event.pubsub_name:
        attrs["funcd.dapr.pubsub"] = event.pubsub_name
    return f"{destination} process", SpanKind.CONSUMER, attrs


def _server(event: Event) -> Attributes:
    environ = event.environ or {}
    host = event.headers.get("host") or ""
    name, _, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
    name = name or str(environ.get("SERVER_NAME", ""))
    port = port or str(environ.get("SERVER_PORT", ""))
    attrs: Attributes = {}
    if name:
        attrs["server.address"] = name
    if port.isdigit():
        attrs["server.port"] = int(port)
    scheme = environ.get("wsgi.url_scheme")
    if scheme:
        attrs["url.scheme"] = str(scheme)
    return attrs


def rejected_span(request: Rejected) -> tuple[str, SpanKind, Attributes]:
    """Name, kind and attributes of the span of a request or delivery refused before the handler."""
    kind = request.trigger.kind
    attrs: Attributes = {
        "faas.trigger": FAAS_TRIGGER[kind],
        "funcd.rejected.reason": request.reason,
        "funcd.reply": request.reply,
        "funcd.outcome": "invalid",
        "error.type": request.reason,
    }
    if request.execution_id:
        attrs["faas.invocation_id"] = request.execution_id
    if kind == "http":
        method, path = request.method or "GET", request.path or "/"
        attrs.update({"http.request.method": method, "url.path": path})
        if isinstance(request.reply, int):
            attrs["http.response.status_code"] = request.reply
        return f"{method} {path}", SpanKind.SERVER, attrs
    destination = request.topic or request.trigger.name
    attrs.update(
        {
            "messaging.system": "dapr",
            "messaging.destination.name": destination,
            "messaging.operation": "process",
            "funcd.input": request.trigger.name,
        }
    )
    return f"{destination} process", SpanKind.CONSUMER, attrs


def outbound_span(call: OutboundCall) -> tuple[str, SpanKind, Attributes]:
    """Name, kind and attributes of the span of a call to the sidecar."""
    attrs: Attributes = {
        "funcd.dapr.component": call.component,
        "funcd.output": call.name,
        "rpc.system": "grpc",
        "server.address": "daprd",
    }
    if call.kind == "publish":
        attrs.update(
            {
                "messaging.system": "dapr",
                "messaging.destination.name": call.target,
                "messaging.operation": "publish",
            }
        )
        return f"{call.target} publish", SpanKind.PRODUCER, attrs
    attrs["funcd.dapr.operation"] = call.target
    if call.kind == "state":
        attrs.update({"db.system": "dapr", "db.operation.name": call.target})
    return f"{call.component} {call.target}", SpanKind.CLIENT, attrs
