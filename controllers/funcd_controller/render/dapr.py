"""Dapr: the sidecar's annotations, the daprd container (``dapr.mode: container``), Components,
the tracing Configuration, the Resiliency policy for dead-letter topics, and the Secret that carries
them to a daprd in standalone mode. Pure."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from functions_framework.model import (
    DEFAULT_HTTP_PORT,
    Component,
    ComponentSpec,
    Exporter,
    Function,
    FunctionContext,
    StateStore,
    Tracing,
)

from .merge import plain_copy
from .meta import app_id, component_object_name, object_meta

__all__ = [
    "app_port",
    "dapr_annotations",
    "dapr_resources",
    "inline_components",
    "otel_target",
    "wired_context",
]

DAPR_HTTP_PORT = 3500
DAPR_GRPC_PORT = 50001
DAPR_METRICS_PORT = 9090
READY_PATH = "/readyz"
HEALTH_PROBE_INTERVAL = "3"
"""Seconds between daprd's app health probes."""
HEALTH_THRESHOLD = "2"
"""Failed probes in a row before daprd stops deliveries to a draining pod."""
HTTP_APP_MAX_CONCURRENCY = "1"
"""daprd's app max concurrency when it calls the function over HTTP: daprd 1.15-1.18 can acknowledge a
message the app never got when it calls concurrently (docs/architecture.md); 1 holds."""
INBOUND_RETRY = {"policy": "exponential", "maxInterval": "15s", "maxRetries": 10}
"""The inbound retry of a pub/sub whose subscription has a dead-letter topic."""
COMPONENTS_PATH = "/components"
CONFIG_PATH = "/dapr-config"


def inline_components(fn: Function) -> dict[str, ComponentSpec]:
    """The components the Function defines (``bindings``, ``pubsub``, ``states``), by name."""
    serving = fn.spec.serving
    if serving is None:
        return {}
    out = {**serving.bindings, **serving.pubsub}
    out.update((name, state.spec) for name, state in serving.states.items() if state.spec is not None)
    return out


def wired_context(fn: Function, ctx: FunctionContext) -> FunctionContext:
    """``ctx`` with each inline component under the name of its rendered Component object."""
    defined = inline_components(fn)

    def comp(c: Component) -> Component:
        if c.component_name not in defined:
            return c
        return replace(c, component_name=component_object_name(fn, c.component_name))

    def store(s: StateStore) -> StateStore:
        if s.component_name not in defined:
            return s
        return replace(s, component_name=component_object_name(fn, s.component_name))

    return replace(
        ctx,
        inputs={n: comp(c) for n, c in ctx.inputs.items()},
        outputs={n: comp(c) for n, c in ctx.outputs.items()},
        states={n: store(s) for n, s in ctx.states.items()},
    )


def app_port(ctx: FunctionContext) -> int:
    """The port daprd calls the function on: the AppCallback port (gRPC) or the HTTP port."""
    if ctx.app_protocol == "grpc":
        return ctx.dapr_port
    return ctx.http_port or DEFAULT_HTTP_PORT


def tracing_on(ctx: FunctionContext) -> bool:
    return ctx.tracing is not None and ctx.tracing.enabled


def dapr_annotations(fn: Function, ctx: FunctionContext) -> dict[str, str]:
    """The annotations that make Dapr's injector add and configure the sidecar. The app channel
    (port, protocol, health check) only when daprd calls the function: with no inputs funcd serves no
    app callbacks, and a daprd waiting for an app port that never opens never gets ready."""
    out = {"dapr.io/enabled": "true", "dapr.io/app-id": app_id(fn)}
    if ctx.inputs:
        out.update({
            "dapr.io/app-port": str(app_port(ctx)),
            "dapr.io/app-protocol": ctx.app_protocol,
            "dapr.io/enable-app-health-check": "true",
            "dapr.io/app-health-check-path": READY_PATH,
            "dapr.io/app-health-probe-interval": HEALTH_PROBE_INTERVAL,
            "dapr.io/app-health-threshold": HEALTH_THRESHOLD,
        })  # fmt: skip
        if ctx.app_protocol == "http":
            out["dapr.io/app-max-concurrency"] = HTTP_APP_MAX_CONCURRENCY
    out["dapr.io/enable-metrics"] = "true"
    out["dapr.io/sidecar-seccomp-profile-type"] = "RuntimeDefault"
    if tracing_on(ctx):
        out["dapr.io/config"] = fn.metadata.name
    return out


def component_spec(spec: ComponentSpec) -> dict[str, Any]:
    """A Dapr Component's ``spec``."""
    metadata = []
    for item in spec.metadata:
        entry: dict[str, Any] = {"name": item.name}
        if item.secret_key_ref is not None:
            ref = {"name": item.secret_key_ref.name}
            if item.secret_key_ref.key:
                ref["key"] = item.secret_key_ref.key
            entry["secretKeyRef"] = ref
        elif item.env_ref:
            entry["envRef"] = item.env_ref
        else:
            entry["value"] = plain_copy(item.value)
        metadata.append(entry)
    out: dict[str, Any] = {"type": spec.type, "version": spec.version or "v1", "metadata": metadata}
    if spec.ignore_errors:
        out["ignoreErrors"] = True
    if spec.init_timeout:
        out["initTimeout"] = spec.init_timeout
    return out


def _dapr_object(fn: Function, kind: str, name: str, spec: dict[str, Any], component: str) -> dict[str, Any]:
    return {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": kind,
        "metadata": object_meta(fn, name, component),
        "spec": spec,
        "scopes": [app_id(fn)],
    }


@dataclass(frozen=True)
class OtelTarget:
    """The function's OTLP exporter as daprd's Configuration takes it."""

    address: str
    """``host:port``: daprd's exporters take no scheme and no path."""
    secure: bool
    """TLS: an ``https://`` endpoint; ``http://`` and a bare ``host:port`` are plain."""
    protocol: Literal["grpc", "http"]
    """``grpc``, or ``http`` for the function's ``http/protobuf``."""
    path: str
    """The URL path the endpoint had; daprd always posts OTLP/HTTP to ``/v1/traces``."""


def otel_target(exporter: Exporter) -> OtelTarget:
    """Where daprd sends spans to reach the function's OTLP endpoint: ``http://jaeger:4317`` becomes
    ``jaeger:4317``, insecure; ``https://otel.example:4318/v1/traces`` becomes
    ``otel.example:4318``, secure."""
    endpoint = exporter.endpoint.strip()
    scheme, sep, rest = endpoint.partition("://")
    if not sep:
        scheme, rest = "", endpoint
    address, slash, path = rest.partition("/")
    protocol: Literal["grpc", "http"] = "http" if exporter.protocol.startswith("http") else "grpc"
    return OtelTarget(address, scheme.lower() == "https", protocol, slash + path if slash else "")


def sampling_rate(tracing: Tracing) -> str:
    """Dapr's ``samplingRate``: a decimal string, ``"1"`` for every trace."""
    return f"{tracing.sampling_rate:g}"


def _configuration(fn: Function, ctx: FunctionContext) -> dict[str, Any] | None:
    """The tracing Configuration: daprd samples at the function's rate and exports to the same
    collector (OTLP, or Zipkin's URL as it is)."""
    if not tracing_on(ctx) or ctx.tracing is None:
        return None
    tracing: dict[str, Any] = {"samplingRate": sampling_rate(ctx.tracing)}
    exporter = ctx.tracing.exporter
    if exporter is not None and exporter.endpoint:
        if exporter.name == "zipkin":
            tracing["zipkin"] = {"endpointAddress": exporter.endpoint}
        else:
            target = otel_target(exporter)
            tracing["otel"] = {
                "endpointAddress": target.address,
                "isSecure": target.secure,
                "protocol": target.protocol,
            }
    return {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Configuration",
        "metadata": object_meta(fn, fn.metadata.name, "dapr-configuration"),
        "spec": {"tracing": tracing},
    }


def _resiliency(fn: Function, ctx: FunctionContext) -> dict[str, Any] | None:
    targets = sorted(
        {c.component_name for c in ctx.inputs.values() if c.kind == "pubsub" and c.dead_letter_topic}
    )
    if not targets:
        return None
    policy = f"{fn.metadata.name}-inbound"
    spec = {
        "policies": {"retries": {policy: dict(INBOUND_RETRY)}},
        "targets": {"components": {name: {"inbound": {"retry": policy}} for name in targets}},
    }
    return _dapr_object(fn, "Resiliency", fn.metadata.name, spec, "dapr-resiliency")


def dapr_resources(fn: Function, ctx: FunctionContext) -> list[dict[str, Any]]:
    """The Dapr objects of the Function: Components, then its Configuration and Resiliency if any."""
    out = [
        _dapr_object(fn, "Component", component_object_name(fn, name), component_spec(spec), "dapr-component")
        for name, spec in inline_components(fn).items()
    ]
    out.extend(obj for obj in (_configuration(fn, ctx), _resiliency(fn, ctx)) if obj is not None)
    return out
