"""FunctionContext: what a function is wired to, parsed once and handed to everything.

Frozen dataclasses only; reading and writing them lives in ``openfunction.py`` (OpenFunction's context
layouts) and ``resource.py`` (the ``Function`` resource). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "APP_PROTOCOLS",
    "DEFAULT_DAPR_PORT",
    "DEFAULT_HTTP_PORT",
    "TRACING_PROVIDERS",
    "AppProtocol",
    "Component",
    "Exporter",
    "FunctionContext",
    "Kind",
    "Metrics",
    "StateStore",
    "Tracing",
    "TracingProvider",
]

DEFAULT_HTTP_PORT = 8080
DEFAULT_DAPR_PORT = 50051

Kind = Literal["pubsub", "bindings"]
AppProtocol = Literal["grpc", "http"]
TracingProvider = Literal["opentelemetry", "skywalking"]

APP_PROTOCOLS: tuple[AppProtocol, ...] = ("grpc", "http")
TRACING_PROVIDERS: tuple[TracingProvider, ...] = ("opentelemetry", "skywalking")


@dataclass(frozen=True)
class Component:
    """A Dapr component the function reads from or writes to."""

    name: str
    """The key the function uses for it (``context.send(output=name)``, ``event.trigger.name``)."""
    component_name: str
    """The Dapr component's name."""
    component_type: str
    """The Dapr component type, e.g. ``pubsub.redis`` or ``bindings.cron``."""
    topic: str = ""
    """The pub/sub topic (pub/sub only)."""
    operation: str = ""
    """The binding operation for outputs, e.g. ``create``."""
    metadata: Mapping[str, str] = field(default_factory=dict)
    """Metadata passed to Dapr with every call."""
    dead_letter_topic: str = ""
    """Pub/sub inputs only: where Dapr sends a message that is dropped or exhausts its retries."""

    @property
    def kind(self) -> Kind:
        """``pubsub`` or ``bindings``, from the component type."""
        return "pubsub" if self.component_type.startswith("pubsub.") else "bindings"


@dataclass(frozen=True)
class StateStore:
    """A Dapr state store the function may use through ``context.state(name)``."""

    name: str
    """The key the function uses for it."""
    component_name: str
    """The Dapr component's name."""
    component_type: str = ""
    """The Dapr component type, e.g. ``state.redis``."""


@dataclass(frozen=True)
class Exporter:
    """Where spans go (OpenTelemetry provider)."""

    name: str = "otlp"
    """Exporter kind: ``otlp``, ``jaeger``, ``zipkin``."""
    endpoint: str = ""
    """Collector endpoint."""
    protocol: str = "grpc"
    """``grpc`` or ``http/protobuf``."""
    headers: str = ""
    """Extra headers, ``k=v,k2=v2``."""
    compression: str = ""
    """``gzip`` or empty."""
    timeout: str = ""
    """Export timeout, e.g. ``10s``."""


@dataclass(frozen=True)
class Tracing:
    """Tracing settings, read by the tracing plugin."""

    enabled: bool = False
    """Whether calls are traced."""
    provider: TracingProvider = "opentelemetry"
    """``opentelemetry`` or ``skywalking``."""
    oap_server: str = ""
    """SkyWalking OAP server address."""
    exporter: Exporter | None = None
    """OpenTelemetry exporter."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Attributes added to every span."""
    baggage: Mapping[str, str] = field(default_factory=dict)
    """Baggage added to every span."""
    sampling_rate: float = 1.0
    """The share of new traces sampled, 0 to 1 (funcd's ``samplingRate``); a call that arrives in a
    trace follows its parent's decision. The function's daprd samples at the same rate."""


@dataclass(frozen=True)
class Metrics:
    """Metrics settings, read by the metrics plugin."""

    enabled: bool = False
    """Whether the function serves Prometheus metrics (turns the ``metrics`` plugin on)."""
    path: str = "/metrics"
    """Where they are served, on the HTTP port."""


@dataclass(frozen=True)
class FunctionContext:
    """Everything the runtime needs to know about the function it serves."""

    name: str = "function"
    """The function's name, used in logs and Dapr app ids."""
    version: str = ""
    """The function's version."""
    http_port: int | None = DEFAULT_HTTP_PORT
    """Port of the HTTP trigger (0: any free port); ``None`` when the function has no HTTP trigger."""
    dapr_port: int = DEFAULT_DAPR_PORT
    """Port of the Dapr AppCallback server for async inputs (0: any free port)."""
    app_protocol: AppProtocol = "grpc"
    """How daprd calls the function: ``grpc`` (AppCallback on ``dapr_port``) or ``http`` (the HTTP port)."""
    inputs: Mapping[str, Component] = field(default_factory=dict)
    """Async triggers: pub/sub topics and input bindings, by name."""
    outputs: Mapping[str, Component] = field(default_factory=dict)
    """Targets of ``context.send``, by name."""
    states: Mapping[str, StateStore] = field(default_factory=dict)
    """State stores, by name."""
    pre_hooks: tuple[str, ...] = ()
    """Plugin names whose ``pre_hook`` runs before each call, in order."""
    post_hooks: tuple[str, ...] = ()
    """Plugin names whose ``post_hook`` runs after each call, in order."""
    tracing: Tracing | None = None
    """Tracing settings, or ``None``. ``enabled`` turns the ``tracing`` plugin on."""
    metrics: Metrics | None = None
    """Metrics settings, or ``None``. ``enabled`` turns the ``metrics`` plugin on."""
    access_log: bool = False
    """Write one access log line per request or delivery (funcd's ``accessLog`` key)."""

    @property
    def plugin_pre_hooks(self) -> tuple[str, ...]:
        """The pre hooks that run: ``tracing`` then ``metrics`` first when enabled and not named."""
        return (*self._implicit_plugins(), *self.pre_hooks)

    @property
    def plugin_post_hooks(self) -> tuple[str, ...]:
        """The post hooks that run: ``metrics`` then ``tracing`` last when enabled and not named."""
        return (*self.post_hooks, *reversed(self._implicit_plugins()))

    def _implicit_plugins(self) -> tuple[str, ...]:
        named = {*self.pre_hooks, *self.post_hooks}
        on = (
            ("tracing", self.tracing is not None and self.tracing.enabled),
            ("metrics", self.metrics is not None and self.metrics.enabled),
        )
        return tuple(name for name, enabled in on if enabled and name not in named)

    @property
    def has_http(self) -> bool:
        """Whether the function has an HTTP trigger."""
        return self.http_port is not None

    @property
    def uses_dapr(self) -> bool:
        """Whether the function needs a Dapr sidecar (inputs, outputs or state stores)."""
        return bool(self.inputs or self.outputs or self.states)
