"""Read a ``Function`` resource with its real paths, check it as a whole, and derive its FunctionContext.

``parse_function(data)`` reads the whole spec (see ``spec.py``) and reports every problem at the path
where it is written, e.g. ``spec.serving.outputs[0].dapr.type``. ``function_context(fn)`` is what the
controller serializes into the pod's ``FUNC_CONTEXT_V1BETA2`` and what ``funcd run`` serves. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .bulk import check_bulk
from .context import (
    APP_PROTOCOLS,
    DEFAULT_HTTP_PORT,
    Component,
    FunctionContext,
    StateStore,
)
from .reader import Reader, at, join
from .sections import (
    DURATION,
    read_component_spec,
    read_hooks,
    read_metrics,
    read_outputs,
    read_scale_options,
    read_tracing,
    read_triggers,
)
from .spec import (
    API_VERSIONS,
    DAPR_MODES,
    WORKLOAD_TYPES,
    ComponentSpec,
    DaprSettings,
    Function,
    FunctionSpec,
    ObjectMeta,
    Serving,
    State,
)

__all__ = ["function_context", "parse_function"]

# Every field of the resource, as OpenFunction's v1beta2 types name them (apis/core/v1beta2), plus
# funcd's ``dapr``. ``status`` and the server-set parts of ``metadata`` are accepted and not kept.
FUNCTION_FIELDS = ("apiVersion", "kind", "metadata", "spec", "status")
METADATA_FIELDS = (
    "name", "generateName", "namespace", "labels", "annotations", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "ownerReferences",
    "finalizers", "managedFields", "selfLink",
)  # fmt: skip
SPEC_FIELDS = ("image", "version", "imageCredentials", "build", "serving", "workloadRuntime")
SERVING_FIELDS = (
    "triggers", "scaleOptions", "outputs", "bindings", "pubsub", "states", "params", "labels",
    "annotations", "template", "timeout", "hooks", "tracing", "metrics", "workloadType", "dapr",
)  # fmt: skip
STATE_FIELDS = ("spec",)
DAPR_SETTINGS_FIELDS = ("mode",)

TRIGGER_KINDS = ("pubsub", "bindings")
INPUT_KINDS = ("pubsub", "bindings", "state")
APP_PROTOCOL_ANNOTATION = "dapr.io/app-protocol"
DEFINED_IN = "spec.serving.bindings, pubsub or states"


def parse_function(data: Any, source: str = "Function") -> Function:
    """Read a ``Function`` resource. Raises ``ContextError`` listing every problem with its path."""
    r = Reader()
    d = r.obj(data, "", FUNCTION_FIELDS)
    api_version = d.get("apiVersion")
    if api_version not in API_VERSIONS:
        r.fail("apiVersion", " or ".join(repr(v) for v in API_VERSIONS), api_version)
    if d.get("kind") != "Function":
        r.fail("kind", "'Function'", d.get("kind"))
    r.opaque(d.get("status"), "status")
    fn = Function(
        metadata=_metadata(r, d.get("metadata")),
        spec=_spec(r, d.get("spec")),
        api_version=api_version if isinstance(api_version, str) else "",
    )
    _check(r, fn)
    _build_context(r, fn)
    r.raise_problems(source)
    return fn


def function_context(fn: Function) -> FunctionContext:
    """The FunctionContext a ``Function`` runs with. Raises ``ContextError`` for unresolved references."""
    r = Reader()
    ctx = _build_context(r, fn)
    r.raise_problems(f"Function {fn.metadata.name!r}")
    return ctx


# ---------------------------------------------------------------- reading


def _metadata(r: Reader, data: Any) -> ObjectMeta:
    d = r.obj(data, "metadata", METADATA_FIELDS)
    generation = r.integer(d, "generation", "metadata", maximum=2**63 - 1)
    return ObjectMeta(
        name=r.string(d, "name", "metadata", required=True),
        namespace=r.string(d, "namespace", "metadata"),
        labels=r.str_map(d.get("labels"), "metadata.labels"),
        annotations=r.str_map(d.get("annotations"), "metadata.annotations"),
        uid=r.string(d, "uid", "metadata"),
        generation=generation,
        resource_version=r.string(d, "resourceVersion", "metadata"),
    )


def _spec(r: Reader, data: Any) -> FunctionSpec:
    d = r.obj(data, "spec", SPEC_FIELDS)
    credentials = r.obj(d.get("imageCredentials"), "spec.imageCredentials", ("name",))
    if d.get("imageCredentials") is not None:
        r.string(credentials, "name", "spec.imageCredentials", required=True)
    return FunctionSpec(
        image=r.string(d, "image", "spec"),
        version=r.string(d, "version", "spec"),
        image_credentials=r.string(credentials, "name", "spec.imageCredentials"),
        build=r.opaque(d.get("build"), "spec.build"),
        serving=_serving(r, d["serving"], "spec.serving") if d.get("serving") is not None else None,
        workload_runtime=r.string(d, "workloadRuntime", "spec"),
    )


def _serving(r: Reader, data: Any, path: str) -> Serving:
    d = r.obj(data, path, SERVING_FIELDS)
    timeout = r.string(d, "timeout", path)
    if timeout and not DURATION.fullmatch(timeout):
        r.fail(join(path, "timeout"), "a duration such as '90s' or '5m'", timeout)
    dapr = r.obj(d.get("dapr"), join(path, "dapr"), DAPR_SETTINGS_FIELDS)
    return Serving(
        triggers=read_triggers(r, d.get("triggers"), join(path, "triggers")),
        outputs=read_outputs(r, d.get("outputs"), join(path, "outputs")),
        bindings=_components(r, d.get("bindings"), join(path, "bindings"), "bindings"),
        pubsub=_components(r, d.get("pubsub"), join(path, "pubsub"), "pubsub"),
        states=_states(r, d.get("states"), join(path, "states")),
        scale_options=read_scale_options(r, d.get("scaleOptions"), join(path, "scaleOptions")),
        hooks=read_hooks(r, d.get("hooks"), join(path, "hooks")),
        tracing=read_tracing(r, d.get("tracing"), join(path, "tracing")),
        metrics=read_metrics(r, d.get("metrics"), join(path, "metrics")),
        params=r.str_map(d.get("params"), join(path, "params")),
        labels=r.str_map(d.get("labels"), join(path, "labels")),
        annotations=r.str_map(d.get("annotations"), join(path, "annotations")),
        template=r.opaque(d.get("template"), join(path, "template")),
        timeout=timeout,
        workload_type=r.choice(d, "workloadType", path, WORKLOAD_TYPES, "Deployment"),
        dapr=DaprSettings(mode=r.choice(dapr, "mode", join(path, "dapr"), DAPR_MODES, "annotations")),
    )


def _components(r: Reader, data: Any, path: str, kind: str) -> dict[str, ComponentSpec]:
    out = {}
    for name, item in r.mapping(data, path).items():
        spec = read_component_spec(r, item, join(path, name))
        r.component_type(spec.type, join(join(path, name), "type"), (kind,))
        out[str(name)] = spec
    return out


def _states(r: Reader, data: Any, path: str) -> dict[str, State]:
    out = {}
    for name, item in r.mapping(data, path).items():
        p = join(path, name)
        d = r.obj(item, p, STATE_FIELDS)
        spec = read_component_spec(r, d["spec"], join(p, "spec")) if d.get("spec") is not None else None
        if spec is not None:
            r.component_type(spec.type, join(join(p, "spec"), "type"), ("state",))
        out[str(name)] = State(spec=spec)
    return out


# ---------------------------------------------------------------- checks across the spec


def _check(r: Reader, fn: Function) -> None:
    serving = fn.spec.serving
    if serving is None:
        return
    base = "spec.serving"
    for name in serving.pubsub:
        if name in serving.bindings:
            r.problem(join(join(base, "pubsub"), name), "this name is also used in spec.serving.bindings")
    protocol = serving.annotations.get(APP_PROTOCOL_ANNOTATION)
    if protocol is not None and protocol not in APP_PROTOCOLS:
        path = join(join(base, "annotations"), APP_PROTOCOL_ANNOTATION)
        r.fail(path, " or ".join(repr(p) for p in APP_PROTOCOLS), protocol)
    scale = serving.scale_options
    if scale is None:
        return
    sp = join(base, "scaleOptions")
    low, high = scale.min_replicas, scale.max_replicas
    if low is not None and high is not None and low > high:
        r.fail(join(sp, "minReplicas"), f"at most maxReplicas ({high})", low)
    keda = scale.keda
    if keda is None:
        return
    kp = join(sp, "keda")
    given = [k for k, v in (("httpScaledObject", keda.http_scaled_object),
                            ("scaledObject", keda.scaled_object),
                            ("scaledJob", keda.scaled_job)) if v is not None]  # fmt: skip
    if len(given) > 1:
        r.problem(
            kp, f"expected one of httpScaledObject, scaledObject and scaledJob, got {' and '.join(given)}"
        )
    is_job = serving.workload_type == "Job"
    if keda.scaled_job is not None and not is_job:
        r.fail(join(kp, "scaledJob"), "workloadType 'Job' (a ScaledJob scales Jobs)", serving.workload_type)
    if keda.scaled_object is not None and is_job:
        r.fail(join(kp, "scaledObject"), "workloadType 'Deployment' or 'StatefulSet' (use scaledJob)", "Job")


def resolve_type(
    r: Reader,
    name: str,
    given: str,
    path: str,
    types: Mapping[str, str],
    kinds: tuple[str, ...],
    defined_in: str = "",
) -> str:
    """The type of the component ``name`` referred to at ``path``: as given, or as defined (``types``).

    ``defined_in`` names where components are defined; without it a missing type is reported at
    ``path.type`` (a context has no definitions to look it up in).
    """
    wanted = " or ".join(f"'{k}.*'" for k in kinds)
    if given:
        defined = types.get(name, "")
        if r.component_type(given, join(path, "type"), kinds) and defined and defined != given:
            r.fail(join(path, "type"), f"{defined!r}, the type of component {name!r}", given)
        return given
    if name in types:
        defined = types[name]
        # A definition of a wrong kind is reported where it is written; here only a misplaced kind.
        misplaced = defined.startswith(("pubsub.", "bindings.", "state.")) and not defined.startswith(
            tuple(f"{k}." for k in kinds)
        )
        if misplaced:
            r.fail(join(path, "name"), f"a component of type {wanted}", f"{name} ({defined})")
        return defined
    if defined_in:
        expected = f"a component defined in {defined_in}, or a type for an existing one"
        r.fail(join(path, "name"), expected, name)
    else:
        r.fail(join(path, "type"), f"a component type ({wanted})", None)
    return ""


def check_topic(r: Reader, comp: Component, path: str) -> None:
    """A pub/sub input or output needs a topic."""
    if comp.component_type.startswith("pubsub.") and not comp.topic:
        r.fail(join(path, "topic"), "a topic name for a pub/sub component", None)


def add_unique(r: Reader, into: dict[str, Component], comp: Component, path: str, what: str) -> None:
    """Add ``comp`` under its name unless another one has it: ``what`` names the field that sets names."""
    if comp.name in into:
        r.problem(path, f"expected a unique name, got {comp.name!r} a second time (set {what})")
        return
    into[comp.name] = comp


def _build_context(r: Reader, fn: Function) -> FunctionContext:
    serving = fn.spec.serving or Serving()
    base = "spec.serving"
    types = {n: c.type for n, c in serving.bindings.items()}
    types.update({n: c.type for n, c in serving.pubsub.items()})
    types.update({n: s.spec.type if s.spec else "" for n, s in serving.states.items()})
    states = {n: StateStore(n, n, s.spec.type if s.spec else "") for n, s in serving.states.items()}
    inputs: dict[str, Component] = {}
    tp = join(base, "triggers")
    for i, t in enumerate(serving.triggers.dapr):
        p = at(join(tp, "dapr"), i)
        ctype = resolve_type(r, t.name, t.type, p, types, TRIGGER_KINDS, DEFINED_IN)
        comp = Component(
            name=t.input_name or t.name,
            component_name=t.name,
            component_type=ctype,
            topic=t.topic,
            metadata=t.metadata,
            dead_letter_topic=t.dead_letter_topic,
        )
        check_topic(r, comp, p)
        check_bulk(r, comp, p)
        add_unique(r, inputs, comp, join(p, "inputName" if t.input_name else "name"), "inputName")
    for i, item in enumerate(serving.triggers.inputs):
        if item.dapr is None:
            continue
        p = join(at(join(tp, "inputs"), i), "dapr")
        ctype = resolve_type(r, item.dapr.name, item.dapr.type, p, types, INPUT_KINDS, DEFINED_IN)
        if ctype.startswith("state.") or (not ctype and item.dapr.name in serving.states):
            states.setdefault(item.dapr.name, StateStore(item.dapr.name, item.dapr.name, ctype))
            continue
        comp = Component(item.dapr.name, item.dapr.name, ctype, topic=item.dapr.topic)
        check_topic(r, comp, p)
        add_unique(r, inputs, comp, join(p, "name"), "a different component name")
    outputs: dict[str, Component] = {}
    for i, out in enumerate(serving.outputs):
        if out.dapr is None:
            continue
        o, p = out.dapr, join(at(join(base, "outputs"), i), "dapr")
        ctype = resolve_type(r, o.name, o.type, p, types, TRIGGER_KINDS, DEFINED_IN)
        comp = Component(
            name=o.output_name or o.name,
            component_name=o.name,
            component_type=ctype,
            topic=o.topic,
            operation=o.operation,
            metadata=o.metadata,
        )
        check_topic(r, comp, p)
        add_unique(r, outputs, comp, join(p, "outputName" if o.output_name else "name"), "outputName")
    http = serving.triggers.http
    if http is not None:
        http_port: int | None = http.port if http.port is not None else DEFAULT_HTTP_PORT
    else:  # as OpenFunction: a function without Dapr triggers is an HTTP function
        http_port = None if serving.triggers.dapr else DEFAULT_HTTP_PORT
    protocol = serving.annotations.get(APP_PROTOCOL_ANNOTATION, "grpc")
    hooks = serving.hooks
    return FunctionContext(
        name=fn.metadata.name or "function",
        version=fn.spec.version,
        http_port=http_port,
        app_protocol="http" if protocol == "http" else "grpc",
        inputs=inputs,
        outputs=outputs,
        states=states,
        pre_hooks=hooks.pre if hooks else (),
        post_hooks=hooks.post if hooks else (),
        tracing=serving.tracing,
        metrics=serving.metrics,
    )
