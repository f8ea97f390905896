"""OpenFunction's FunctionContext layouts: read ``FUNC_CONTEXT`` (v1beta1) and ``FUNC_CONTEXT_V1BETA2``,
write v1beta2 (``dump_context``, what funcd's controller puts in the pod).

Every key OpenFunction's controller writes is accepted (pkg/core/serving/common/functioncontext.go),
including the ones funcd has no use for (``IGNORED_V1BETA1``). funcd adds ``daprPort`` and
``appProtocol`` (v1beta2), ``deadLetterTopic`` on inputs, and ``deadLetterTopic``/``metadata`` on Dapr
triggers. Any other key is a problem, with a did-you-mean. A ``Function`` resource given as text is read
by ``resource.py``. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from ..errors import ContextError
from .bulk import check_bulk
from .context import (
    APP_PROTOCOLS,
    DEFAULT_DAPR_PORT,
    DEFAULT_HTTP_PORT,
    Component,
    FunctionContext,
    StateStore,
    Tracing,
)
from .reader import Reader, at, join, show
from .resource import add_unique, check_topic, function_context, parse_function, resolve_type
from .sections import read_metrics, read_tracing, read_triggers

__all__ = ["detect_layout", "dump_context", "parse_context", "parse_context_text"]

Layout = Literal["v1beta1", "v1beta2"]

# v1beta1 (functionContextV1beta1): `state` and `httpPattern` are declared there and never set.
V1BETA1_FIELDS = (
    "name", "version", "runtime", "port", "inputs", "outputs", "states", "prePlugins", "postPlugins",
    "pluginsTracing", "state", "httpPattern",
)  # fmt: skip
IGNORED_V1BETA1 = ("state", "httpPattern")
V1BETA1_INPUT_FIELDS = ("uri", "componentName", "componentType", "metadata", "deadLetterTopic")
V1BETA1_OUTPUT_FIELDS = ("uri", "componentName", "componentType", "metadata", "operation")
# v1beta2 (functionContextV1beta2); `triggers` is spec.serving.triggers as written in the Function.
V1BETA2_FIELDS = (
    "name", "version", "triggers", "inputs", "outputs", "states", "preHooks", "postHooks", "tracing",
    "metrics", "daprPort", "appProtocol", "accessLog", "port",
)  # fmt: skip
# `port`: OpenFunction's current Python framework serves Dapr triggers on it (and HTTP when
# triggers.http has no port); funcd reads it the same way, `daprPort` taking precedence.
V1BETA2_COMPONENT_FIELDS = (
    "componentName", "componentType", "topic", "metadata", "operation", "deadLetterTopic",
)  # fmt: skip
STATE_FIELDS = ("componentName", "componentType")
RUNTIMES = ("Knative", "Async", "knative", "async")

KINDS = ("pubsub", "bindings")
INPUT_KINDS = ("pubsub", "bindings", "state")


def detect_layout(data: Mapping[str, Any]) -> Layout:
    """Tell OpenFunction's two context layouts apart by their distinctive keys."""
    v1beta2_keys = {
        "triggers", "preHooks", "postHooks", "tracing", "metrics", "daprPort", "appProtocol", "accessLog"
    }  # fmt: skip
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
        raise ContextError([f"(top level): expected an object, got {show(data)}"], source)
    r = Reader()
    ctx = _parse_v1beta1(r, data) if detect_layout(data) == "v1beta1" else _parse_v1beta2(r, data)
    r.raise_problems(source)
    return ctx


def parse_context_text(text: str, source: str = "function context") -> FunctionContext:
    """Parse JSON or YAML text: a context in either layout, or a ``Function`` resource."""
    import yaml  # imported here: start-up without a YAML context does not pay for it

    try:
        data = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise ContextError([f"(text): expected JSON or YAML, got a syntax error: {exc}"], source) from None
    if isinstance(data, Mapping) and ("kind" in data or "apiVersion" in data):
        return function_context(parse_function(data, source))
    return parse_context(data, source)


# ---------------------------------------------------------------- v1beta1


def _parse_v1beta1(r: Reader, data: Mapping[str, Any]) -> FunctionContext:
    d = r.obj(data, "", V1BETA1_FIELDS)
    runtime = d.get("runtime", "Knative")
    if runtime not in RUNTIMES:
        r.fail("runtime", "'Knative' or 'Async'", runtime)
    port = r.port(d.get("port", str(DEFAULT_HTTP_PORT)), "port")
    inputs: dict[str, Component] = {}
    for name, item in r.mapping(d.get("inputs"), "inputs").items():
        inputs[str(name)] = _v1beta1_component(r, str(name), item, join("inputs", name), output=False)
        check_bulk(r, inputs[str(name)], join("inputs", name))
    outputs: dict[str, Component] = {}
    for name, item in r.mapping(d.get("outputs"), "outputs").items():
        outputs[str(name)] = _v1beta1_component(r, str(name), item, join("outputs", name), output=True)
    # An async function serves Dapr on `port`; a Knative one serves HTTP there.
    is_async = str(runtime).lower() == "async"
    http_port, dapr_port = (None, port) if is_async else (port, DEFAULT_DAPR_PORT)
    return FunctionContext(
        name=r.string(d, "name", "") or "function",
        version=r.string(d, "version", ""),
        http_port=http_port,
        dapr_port=DEFAULT_DAPR_PORT if dapr_port is None else dapr_port,
        inputs=inputs,
        outputs=outputs,
        states=_states(r, d.get("states"), "states"),
        pre_hooks=r.strings(d.get("prePlugins"), "prePlugins"),
        post_hooks=r.strings(d.get("postPlugins"), "postPlugins"),
        tracing=read_tracing(r, d.get("pluginsTracing"), "pluginsTracing"),
    )


def _v1beta1_component(r: Reader, name: str, data: Any, path: str, output: bool) -> Component:
    d = r.obj(data, path, V1BETA1_OUTPUT_FIELDS if output else V1BETA1_INPUT_FIELDS)
    ctype = r.string(d, "componentType", path, required=True)
    r.component_type(ctype, join(path, "componentType"), KINDS)
    uri = r.string(d, "uri", path)  # the topic for pub/sub, the component's name for bindings
    if ctype.startswith("pubsub.") and not uri:
        r.fail(join(path, "uri"), "a topic name for a pub/sub component", None)
    return Component(
        name=name,
        component_name=r.string(d, "componentName", path, required=True),
        component_type=ctype,
        topic=uri if ctype.startswith("pubsub.") else "",
        operation=r.string(d, "operation", path),
        metadata=r.str_map(d.get("metadata"), join(path, "metadata")),
        dead_letter_topic=r.string(d, "deadLetterTopic", path),
    )


def _states(r: Reader, data: Any, path: str) -> dict[str, StateStore]:
    out: dict[str, StateStore] = {}
    for name, item in r.mapping(data, path).items():
        p = join(path, name)
        d = r.obj(item, p, STATE_FIELDS)
        ctype = r.string(d, "componentType", p)
        r.component_type(ctype, join(p, "componentType"), ("state",))
        out[str(name)] = StateStore(str(name), r.string(d, "componentName", p) or str(name), ctype)
    return out


# ---------------------------------------------------------------- v1beta2


def _parse_v1beta2(r: Reader, data: Mapping[str, Any]) -> FunctionContext:
    d = r.obj(data, "", V1BETA2_FIELDS)
    triggers = read_triggers(r, d.get("triggers"), "triggers")
    states = _states(r, d.get("states"), "states")
    inputs: dict[str, Component] = {}
    for i, t in enumerate(triggers.dapr):
        p = at("triggers.dapr", i)
        ctype = resolve_type(r, t.name, t.type, p, {}, KINDS)
        comp = Component(t.input_name or t.name, t.name, ctype, t.topic, "", t.metadata, t.dead_letter_topic)
        check_topic(r, comp, p)
        check_bulk(r, comp, p)
        add_unique(r, inputs, comp, join(p, "inputName" if t.input_name else "name"), "inputName")
    listed = {
        str(name): _v1beta2_component(r, str(name), item, join("inputs", name), INPUT_KINDS)
        for name, item in r.mapping(d.get("inputs"), "inputs").items()
    }
    for i, item in enumerate(triggers.inputs):
        # OpenFunction's controller writes each of these again, resolved, in `inputs`: read that one.
        if item.dapr is None or item.dapr.name in listed:
            continue
        p = join(at("triggers.inputs", i), "dapr")
        ctype = resolve_type(r, item.dapr.name, item.dapr.type, p, {}, INPUT_KINDS)
        listed_comp = Component(item.dapr.name, item.dapr.name, ctype, item.dapr.topic)
        if ctype.startswith("state."):
            states.setdefault(item.dapr.name, StateStore(item.dapr.name, item.dapr.name, ctype))
            continue
        check_topic(r, listed_comp, p)
        add_unique(r, inputs, listed_comp, join(p, "name"), "a different component name")
    for name, comp in listed.items():
        if comp.component_type.startswith("state."):  # OpenFunction: data inputs are state stores
            states.setdefault(name, StateStore(name, comp.component_name, comp.component_type))
            continue
        check_topic(r, comp, join("inputs", name))
        check_bulk(r, comp, join("inputs", name))
        add_unique(r, inputs, comp, join("inputs", name), "a different name")
    outputs = {
        str(name): _v1beta2_component(r, str(name), item, join("outputs", name), KINDS)
        for name, item in r.mapping(d.get("outputs"), "outputs").items()
    }
    for name, comp in outputs.items():
        check_topic(r, comp, join("outputs", name))
    app_port = r.port(d["port"], "port") if d.get("port") is not None else None
    if triggers.http is not None:
        port = triggers.http.port if triggers.http.port is not None else app_port
        http_port: int | None = DEFAULT_HTTP_PORT if port is None else port
    else:  # no triggers at all: an HTTP function
        http_port = DEFAULT_HTTP_PORT if d.get("triggers") is None and not inputs else None
    dapr_port = r.port(d["daprPort"], "daprPort") if d.get("daprPort") is not None else None
    if dapr_port is None and triggers.http is None:
        dapr_port = app_port
    return FunctionContext(
        name=r.string(d, "name", "") or "function",
        version=r.string(d, "version", ""),
        http_port=http_port,
        dapr_port=DEFAULT_DAPR_PORT if dapr_port is None else dapr_port,
        app_protocol=r.choice(d, "appProtocol", "", APP_PROTOCOLS, "grpc"),
        access_log=r.boolean(d, "accessLog", ""),
        inputs=inputs,
        outputs=outputs,
        states=states,
        pre_hooks=r.strings(d.get("preHooks"), "preHooks"),
        post_hooks=r.strings(d.get("postHooks"), "postHooks"),
        tracing=read_tracing(r, d.get("tracing"), "tracing"),
        metrics=read_metrics(r, d.get("metrics"), "metrics"),
    )


def _v1beta2_component(r: Reader, name: str, data: Any, path: str, kinds: tuple[str, ...]) -> Component:
    d = r.obj(data, path, V1BETA2_COMPONENT_FIELDS)
    ctype = r.string(d, "componentType", path, required=True)
    r.component_type(ctype, join(path, "componentType"), kinds)
    return Component(
        name=name,
        component_name=r.string(d, "componentName", path, required=True),
        component_type=ctype,
        topic=r.string(d, "topic", path),
        operation=r.string(d, "operation", path),
        metadata=r.str_map(d.get("metadata"), join(path, "metadata")),
        dead_letter_topic=r.string(d, "deadLetterTopic", path),
    )


# ---------------------------------------------------------------- dump


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
    if ctx.access_log:
        out["accessLog"] = True
    if ctx.pre_hooks:
        out["preHooks"] = list(ctx.pre_hooks)
    if ctx.post_hooks:
        out["postHooks"] = list(ctx.post_hooks)
    if ctx.tracing is not None:
        out["tracing"] = _dump_tracing(ctx.tracing)
    if ctx.metrics is not None:
        out["metrics"] = {"enabled": ctx.metrics.enabled, "path": ctx.metrics.path}
    return out


def _dump_component(c: Component) -> dict[str, Any]:
    d: dict[str, Any] = {"componentName": c.component_name, "componentType": c.component_type}
    extras = (("topic", c.topic), ("operation", c.operation), ("deadLetterTopic", c.dead_letter_topic))
    d.update((key, value) for key, value in extras if value)
    if c.metadata:
        d["metadata"] = dict(c.metadata)
    return d


def _dump_tracing(t: Tracing) -> dict[str, Any]:
    provider: dict[str, Any] = {"name": t.provider}
    if t.oap_server:
        provider["oapServer"] = t.oap_server
    if t.exporter is not None:
        e = t.exporter
        fields = (
            ("name", e.name),
            ("endpoint", e.endpoint),
            ("protocol", e.protocol),
            ("headers", e.headers),
            ("compression", e.compression),
            ("timeout", e.timeout),
        )
        provider["exporter"] = {k: v for k, v in fields if v}
    out = {"enabled": t.enabled, "provider": provider, "tags": dict(t.tags), "baggage": dict(t.baggage)}
    if t.sampling_rate != 1.0:
        out["samplingRate"] = t.sampling_rate
    return out
