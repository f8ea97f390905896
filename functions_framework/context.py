"""FunctionContext: what a function is wired to, parsed once and handed to everything.

Accepted layouts:

* OpenFunction v1beta1 (``FUNC_CONTEXT``): ``runtime``, ``port`` as a string, ``inputs``/``outputs``
  with ``uri``/``componentName``/``componentType``, ``prePlugins``/``postPlugins``, ``pluginsTracing``.
* OpenFunction v1beta2 (``FUNC_CONTEXT_V1BETA2``): ``triggers.http/dapr/inputs``, ``inputs``,
  ``outputs``, ``states``, ``preHooks``/``postHooks``, ``tracing``.
* A ``Function`` custom resource: its ``spec.serving`` (same shape as OpenFunction v1beta2).

Parsing is pure. Every problem is collected and raised once as ``ContextError``::

    ContextError(ValueError)
      .problems: list of "path: expected X, got Y"
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ContextError

DEFAULT_HTTP_PORT = 8080
DEFAULT_DAPR_PORT = 50051
TRACING_PROVIDERS = ("opentelemetry", "skywalking")
APP_PROTOCOLS = ("grpc", "http")

Kind = Literal["pubsub", "bindings"]


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
    provider: str = "opentelemetry"
    """``opentelemetry`` or ``skywalking``."""
    oap_server: str = ""
    """SkyWalking OAP server address."""
    exporter: Exporter | None = None
    """OpenTelemetry exporter."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Attributes added to every span."""
    baggage: Mapping[str, str] = field(default_factory=dict)
    """Baggage added to every span."""


@dataclass(frozen=True)
class FunctionContext:
    """Everything the runtime needs to know about the function it serves."""

    name: str = "function"
    """The function's name, used in logs and Dapr app ids."""
    version: str = ""
    """The function's version."""
    http_port: int | None = DEFAULT_HTTP_PORT
    """Port of the HTTP trigger; ``None`` when the function has no HTTP trigger."""
    dapr_port: int = DEFAULT_DAPR_PORT
    """Port of the Dapr AppCallback server (async inputs)."""
    app_protocol: str = "grpc"
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
    """Tracing settings, or ``None``."""

    @property
    def has_http(self) -> bool:
        return self.http_port is not None

    @property
    def uses_dapr(self) -> bool:
        return bool(self.inputs or self.outputs or self.states)


class _Reader:
    """Collects problems while reading nested JSON-like data."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, path: str, expected: str, got: Any) -> None:
        self.problems.append(f"{path}: expected {expected}, got {_show(got)}")

    def mapping(self, data: Any, path: str) -> Mapping[str, Any]:
        if data is None:
            return {}
        if not isinstance(data, Mapping):
            self.fail(path, "an object", data)
            return {}
        return data

    def sequence(self, data: Any, path: str) -> list[Any]:
        if data is None:
            return []
        if not isinstance(data, list):
            self.fail(path, "a list", data)
            return []
        return data

    def string(self, data: Mapping[str, Any], key: str, path: str, required: bool = False) -> str:
        value = data.get(key)
        if value is None or (value == "" and not required):
            if required:
                self.fail(f"{path}.{key}", "a non-empty string", value)
            return ""
        if not isinstance(value, str) or (required and not value):
            self.fail(f"{path}.{key}", "a non-empty string" if required else "a string", value)
            return ""
        return value

    def strings(self, data: Any, path: str) -> tuple[str, ...]:
        items = self.sequence(data, path)
        out = []
        for i, item in enumerate(items):
            if isinstance(item, str) and item:
                out.append(item)
            else:
                self.fail(f"{path}[{i}]", "a non-empty string", item)
        return tuple(out)

    def str_map(self, data: Any, path: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, value in self.mapping(data, path).items():
            if isinstance(value, (str, int, float, bool)) and not isinstance(value, bool):
                out[str(key)] = str(value)
            elif isinstance(value, bool):
                out[str(key)] = "true" if value else "false"
            else:
                self.fail(f"{path}.{key}", "a string", value)
        return out

    def port(self, value: Any, path: str) -> int | None:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
            self.fail(path, "a port number 0-65535", value)
            return None
        return value

    def boolean(self, data: Mapping[str, Any], key: str, path: str) -> bool:
        value = data.get(key, False)
        if not isinstance(value, bool):
            self.fail(f"{path}.{key}", "true or false", value)
            return False
        return value


def _show(value: Any) -> str:
    if value is None:
        return "nothing"
    text = json.dumps(value) if isinstance(value, (str, int, float, bool)) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_type(r: _Reader, component_type: str, path: str, allowed: tuple[str, ...]) -> None:
    if component_type and not component_type.startswith(tuple(f"{a}." for a in allowed)):
        expected = " or ".join(f"'{a}.*'" for a in allowed)
        r.fail(path, expected, component_type)


# ---------------------------------------------------------------- v1beta1


def _v1beta1_component(r: _Reader, name: str, data: Any, path: str, output: bool) -> Component | None:
    d = r.mapping(data, path)
    if not d:
        return None
    ctype = r.string(d, "componentType", path, required=True)
    _check_type(r, ctype, f"{path}.componentType", ("bindings", "pubsub"))
    uri = r.string(d, "uri", path)
    return Component(
        name=name,
        component_name=r.string(d, "componentName", path, required=True),
        component_type=ctype,
        topic=uri if ctype.startswith("pubsub.") else "",
        operation=r.string(d, "operation", path) if output else "",
        metadata=r.str_map(d.get("metadata"), f"{path}.metadata"),
        dead_letter_topic=r.string(d, "deadLetterTopic", path),
    )


def _parse_v1beta1(r: _Reader, d: Mapping[str, Any]) -> FunctionContext:
    runtime = d.get("runtime", "Knative")
    if runtime not in ("Knative", "Async", "knative", "async"):
        r.fail("runtime", "'Knative' or 'Async'", runtime)
    port = r.port(d.get("port", str(DEFAULT_HTTP_PORT)), "port")
    inputs = _components(r, d.get("inputs"), "inputs", output=False, reader=_v1beta1_component)
    outputs = _components(r, d.get("outputs"), "outputs", output=True, reader=_v1beta1_component)
    is_async = str(runtime).lower() == "async"
    if is_async and port is not None:
        dapr_port, http_port = port, None
    else:
        dapr_port, http_port = DEFAULT_DAPR_PORT, port
    return FunctionContext(
        name=r.string(d, "name", "") or "function",
        version=r.string(d, "version", ""),
        http_port=http_port,
        dapr_port=dapr_port,
        inputs=inputs,
        outputs=outputs,
        states=_states(r, d.get("states"), "states"),
        pre_hooks=r.strings(d.get("prePlugins"), "prePlugins"),
        post_hooks=r.strings(d.get("postPlugins"), "postPlugins"),
        tracing=_tracing(r, d.get("pluginsTracing"), "pluginsTracing"),
    )


# ---------------------------------------------------------------- v1beta2


def _v1beta2_component(r: _Reader, name: str, data: Any, path: str, output: bool) -> Component | None:
    d = r.mapping(data, path)
    if not d:
        return None
    ctype = r.string(d, "componentType", path, required=True)
    _check_type(r, ctype, f"{path}.componentType", ("bindings", "pubsub"))
    return Component(
        name=name,
        component_name=r.string(d, "componentName", path, required=True),
        component_type=ctype,
        topic=r.string(d, "topic", path),
        operation=r.string(d, "operation", path) if output else "",
        metadata=r.str_map(d.get("metadata"), f"{path}.metadata"),
        dead_letter_topic=r.string(d, "deadLetterTopic", path),
    )


def _components(r: _Reader, data: Any, path: str, output: bool, reader: Any) -> dict[str, Component]:
    out: dict[str, Component] = {}
    for name, item in r.mapping(data, path).items():
        comp = reader(r, str(name), item, f"{path}.{name}", output)
        if comp is not None:
            _require_topic(r, comp, f"{path}.{name}")
            out[str(name)] = comp
    return out


def _require_topic(r: _Reader, comp: Component, path: str) -> None:
    if comp.kind == "pubsub" and not comp.topic:
        r.fail(f"{path}.topic", "a topic name for a pub/sub component", comp.topic or None)


def _states(r: _Reader, data: Any, path: str) -> dict[str, StateStore]:
    out: dict[str, StateStore] = {}
    for name, item in r.mapping(data, path).items():
        p = f"{path}.{name}"
        d = r.mapping(item, p)
        ctype = r.string(d, "componentType", p)
        _check_type(r, ctype, f"{p}.componentType", ("state",))
        out[str(name)] = StateStore(
            name=str(name),
            component_name=r.string(d, "componentName", p) or str(name),
            component_type=ctype,
        )
    return out


def _tracing(r: _Reader, data: Any, path: str) -> Tracing | None:
    if data is None:
        return None
    d = r.mapping(data, path)
    enabled = r.boolean(d, "enabled", path) or r.boolean(d, "enable", path)
    provider = r.mapping(d.get("provider"), f"{path}.provider")
    pname = r.string(provider, "name", f"{path}.provider") or "opentelemetry"
    if pname not in TRACING_PROVIDERS:
        r.fail(f"{path}.provider.name", " or ".join(repr(p) for p in TRACING_PROVIDERS), pname)
    exporter = None
    if provider.get("exporter") is not None:
        ep = f"{path}.provider.exporter"
        e = r.mapping(provider.get("exporter"), ep)
        exporter = Exporter(
            name=r.string(e, "name", ep) or "otlp",
            endpoint=r.string(e, "endpoint", ep),
            protocol=r.string(e, "protocol", ep) or "grpc",
            headers=r.string(e, "headers", ep),
            compression=r.string(e, "compression", ep),
            timeout=r.string(e, "timeout", ep),
        )
    return Tracing(
        enabled=enabled,
        provider=pname,
        oap_server=r.string(provider, "oapServer", f"{path}.provider"),
        exporter=exporter,
        tags=r.str_map(d.get("tags"), f"{path}.tags"),
        baggage=r.str_map(d.get("baggage"), f"{path}.baggage"),
    )


def _dapr_trigger(r: _Reader, item: Any, path: str, types: Mapping[str, str]) -> tuple[str, Component] | None:
    d = r.mapping(item, path)
    if not d:
        return None
    cname = r.string(d, "name", path, required=True)
    ctype = r.string(d, "type", path) or types.get(cname, "")
    if not ctype:
        r.fail(f"{path}.type", "a component type ('pubsub.*' or 'bindings.*')", None)
    _check_type(r, ctype, f"{path}.type", ("bindings", "pubsub"))
    name = r.string(d, "inputName", path) or cname
    comp = Component(
        name=name,
        component_name=cname,
        component_type=ctype,
        topic=r.string(d, "topic", path),
        metadata=r.str_map(d.get("metadata"), f"{path}.metadata"),
        dead_letter_topic=r.string(d, "deadLetterTopic", path),
    )
    if ctype:
        _require_topic(r, comp, path)
    return name, comp


def _parse_v1beta2(
    r: _Reader, d: Mapping[str, Any], types: Mapping[str, str] | None = None
) -> FunctionContext:
    types = types or {}
    triggers = r.mapping(d.get("triggers"), "triggers")
    http = triggers.get("http")
    http_port: int | None = None
    if http is not None:
        h = r.mapping(http, "triggers.http")
        http_port = r.port(h.get("port", DEFAULT_HTTP_PORT), "triggers.http.port")
    inputs: dict[str, Component] = {}
    for i, item in enumerate(r.sequence(triggers.get("dapr"), "triggers.dapr")):
        got = _dapr_trigger(r, item, f"triggers.dapr[{i}]", types)
        if got:
            _add_unique(r, inputs, got, f"triggers.dapr[{i}]")
    for i, item in enumerate(r.sequence(triggers.get("inputs"), "triggers.inputs")):
        p = f"triggers.inputs[{i}]"
        dapr = r.mapping(item, p).get("dapr")
        got = _dapr_trigger(r, dapr, f"{p}.dapr", types) if dapr is not None else None
        if got:
            _add_unique(r, inputs, got, p)
    for name, comp in _components(r, d.get("inputs"), "inputs", False, _v1beta2_component).items():
        _add_unique(r, inputs, (name, comp), f"inputs.{name}")
    if not http_port and http is None and not inputs and "triggers" not in d:
        http_port = DEFAULT_HTTP_PORT
    dapr_port = r.port(d.get("daprPort", DEFAULT_DAPR_PORT), "daprPort") or DEFAULT_DAPR_PORT
    app_protocol = d.get("appProtocol", "grpc")
    if app_protocol not in APP_PROTOCOLS:
        r.fail("appProtocol", " or ".join(repr(p) for p in APP_PROTOCOLS), app_protocol)
    return FunctionContext(
        app_protocol=str(app_protocol),
        name=r.string(d, "name", "") or "function",
        version=r.string(d, "version", ""),
        http_port=http_port,
        dapr_port=dapr_port,
        inputs=inputs,
        outputs=_components(r, d.get("outputs"), "outputs", True, _v1beta2_component),
        states=_states(r, d.get("states"), "states"),
        pre_hooks=r.strings(d.get("preHooks"), "preHooks"),
        post_hooks=r.strings(d.get("postHooks"), "postHooks"),
        tracing=_tracing(r, d.get("tracing"), "tracing"),
    )


def _add_unique(r: _Reader, into: dict[str, Component], item: tuple[str, Component], path: str) -> None:
    name, comp = item
    if name in into:
        r.problems.append(
            f"{path}: expected a unique input name (set inputName), got a second input {name!r}"
        )
        return
    into[name] = comp


# ---------------------------------------------------------------- entry points


def detect_layout(data: Mapping[str, Any]) -> Literal["v1beta1", "v1beta2"]:
    """Tell OpenFunction's two context layouts apart by their distinctive keys."""
    v1beta2_keys = {"triggers", "preHooks", "postHooks", "tracing", "daprPort", "appProtocol"}
    v1beta1_keys = {"runtime", "port", "prePlugins", "postPlugins", "pluginsTracing"}
    if v1beta2_keys & data.keys():
        return "v1beta2"
    if v1beta1_keys & data.keys():
        return "v1beta1"
    inputs = data.get("inputs") or data.get("outputs")
    if isinstance(inputs, Mapping) and any(isinstance(v, Mapping) and "uri" in v for v in inputs.values()):
        return "v1beta1"
    return "v1beta2"


def parse_context(data: Any, source: str = "function context") -> FunctionContext:
    """Parse a context object in either OpenFunction layout. Raises ``ContextError``."""
    if not isinstance(data, Mapping):
        raise ContextError([f"(top level): expected an object, got {_show(data)}"], source)
    r = _Reader()
    ctx = _parse_v1beta1(r, data) if detect_layout(data) == "v1beta1" else _parse_v1beta2(r, data)
    if r.problems:
        raise ContextError(r.problems, source)
    return ctx


def parse_context_text(text: str, source: str = "function context") -> FunctionContext:
    """Parse JSON or YAML text: a context, or a ``Function`` resource (its ``spec.serving``)."""
    import yaml  # imported here: start-up without a YAML context does not pay for it

    try:
        data = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise ContextError([f"(text): expected JSON or YAML, got a syntax error: {exc}"], source) from None
    if isinstance(data, Mapping) and data.get("kind") == "Function":
        return parse_function_resource(data, source)
    return parse_context(data, source)


def parse_function_resource(data: Mapping[str, Any], source: str = "Function") -> FunctionContext:
    """Build the context from a ``Function`` resource's ``metadata`` and ``spec.serving``."""
    r = _Reader()
    meta = r.mapping(data.get("metadata"), "metadata")
    spec = r.mapping(data.get("spec"), "spec")
    serving = r.mapping(spec.get("serving"), "spec.serving")
    if r.problems:
        raise ContextError(r.problems, source)
    types: dict[str, str] = {}
    for section in ("bindings", "pubsub"):
        for cname, comp in r.mapping(serving.get(section), f"spec.serving.{section}").items():
            if isinstance(comp, Mapping) and isinstance(comp.get("type"), str):
                types[str(cname)] = comp["type"]
    ctx_data: dict[str, Any] = {
        "name": meta.get("name", ""),
        "version": spec.get("version", ""),
        "triggers": serving.get("triggers") or {},
    }
    outputs = {}
    for i, item in enumerate(r.sequence(serving.get("outputs"), "spec.serving.outputs")):
        dapr = r.mapping(
            r.mapping(item, f"spec.serving.outputs[{i}]").get("dapr"), f"spec.serving.outputs[{i}].dapr"
        )
        if not dapr:
            continue
        cname = dapr.get("name", "")
        outputs[dapr.get("outputName") or cname] = {
            "componentName": cname,
            "componentType": dapr.get("type") or types.get(str(cname), ""),
            "topic": dapr.get("topic", ""),
            "operation": dapr.get("operation", ""),
            "metadata": dapr.get("metadata") or {},
        }
    if outputs:
        ctx_data["outputs"] = outputs
    states = {}
    for name, state in r.mapping(serving.get("states"), "spec.serving.states").items():
        st = r.mapping(state, f"spec.serving.states.{name}")
        stype = r.mapping(st.get("spec"), f"spec.serving.states.{name}.spec").get("type", "")
        states[name] = {"componentName": name, "componentType": stype}
    if states:
        ctx_data["states"] = states
    hooks = r.mapping(serving.get("hooks"), "spec.serving.hooks")
    if hooks.get("pre"):
        ctx_data["preHooks"] = hooks["pre"]
    if hooks.get("post"):
        ctx_data["postHooks"] = hooks["post"]
    if serving.get("tracing") is not None:
        ctx_data["tracing"] = serving["tracing"]
    annotations = r.mapping(serving.get("annotations"), "spec.serving.annotations")
    if annotations.get("dapr.io/app-protocol"):
        ctx_data["appProtocol"] = annotations["dapr.io/app-protocol"]
    r2 = _Reader()
    ctx = _parse_v1beta2(r2, ctx_data, types)
    problems = r.problems + [f"spec.serving.{p}" for p in r2.problems]
    if problems:
        raise ContextError(problems, source)
    return ctx


def dump_context(ctx: FunctionContext) -> dict[str, Any]:
    """Write the context in the OpenFunction v1beta2 layout (what ``parse_context`` reads back)."""
    triggers: dict[str, Any] = {}
    if ctx.http_port is not None:
        triggers["http"] = {"port": ctx.http_port}
    out: dict[str, Any] = {"name": ctx.name, "version": ctx.version, "triggers": triggers}
    if ctx.inputs:
        out["inputs"] = {n: _dump_component(c) for n, c in ctx.inputs.items()}
    if ctx.outputs:
        out["outputs"] = {n: _dump_component(c) for n, c in ctx.outputs.items()}
    if ctx.states:
        out["states"] = {
            n: {"componentName": s.component_name, "componentType": s.component_type}
            for n, s in ctx.states.items()
        }
    if ctx.dapr_port != DEFAULT_DAPR_PORT:
        out["daprPort"] = ctx.dapr_port
    if ctx.app_protocol != "grpc":
        out["appProtocol"] = ctx.app_protocol
    if ctx.pre_hooks:
        out["preHooks"] = list(ctx.pre_hooks)
    if ctx.post_hooks:
        out["postHooks"] = list(ctx.post_hooks)
    if ctx.tracing is not None:
        out["tracing"] = _dump_tracing(ctx.tracing)
    return out


def _dump_component(c: Component) -> dict[str, Any]:
    d: dict[str, Any] = {"componentName": c.component_name, "componentType": c.component_type}
    for key, value in (
        ("topic", c.topic),
        ("operation", c.operation),
        ("deadLetterTopic", c.dead_letter_topic),
    ):
        if value:
            d[key] = value
    if c.metadata:
        d["metadata"] = dict(c.metadata)
    return d


def _dump_tracing(t: Tracing) -> dict[str, Any]:
    provider: dict[str, Any] = {"name": t.provider}
    if t.oap_server:
        provider["oapServer"] = t.oap_server
    if t.exporter is not None:
        e = t.exporter
        provider["exporter"] = {
            k: v
            for k, v in (
                ("name", e.name),
                ("endpoint", e.endpoint),
                ("protocol", e.protocol),
                ("headers", e.headers),
                ("compression", e.compression),
                ("timeout", e.timeout),
            )
            if v
        }
    return {"enabled": t.enabled, "provider": provider, "tags": dict(t.tags), "baggage": dict(t.baggage)}
