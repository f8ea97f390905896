"""Readers for the parts of a Function spec that OpenFunction's context layouts share.

``triggers`` and ``tracing`` have one shape in ``spec.serving`` and in ``FUNC_CONTEXT_V1BETA2`` (the
controller copies them), and ``tracing`` is also v1beta1's ``pluginsTracing``. Each reader takes the
path where its data sits, so a problem names the real place. Field lists are OpenFunction's v1beta2
API types (apis/core/v1beta2) and the KEDA and Dapr types they embed. Pure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from .context import TRACING_PROVIDERS, Exporter, Metrics, Tracing
from .reader import Reader, at, join
from .spec import (
    HOOK_POLICIES,
    HTTP_ENGINES,
    METRIC_TYPES,
    RESTART_POLICIES,
    AuthenticationRef,
    ComponentSpec,
    DaprOutput,
    DaprRef,
    DaprTrigger,
    GatewayRef,
    Hooks,
    HttpScaledObject,
    HttpTrigger,
    Input,
    KedaScaledJob,
    KedaScaledObject,
    KedaScaleOptions,
    KedaTrigger,
    MetadataItem,
    Output,
    Route,
    ScaleOptions,
    SecretKeyRef,
    Triggers,
)

__all__ = [
    "DURATION",
    "duration_seconds",
    "read_component_spec",
    "read_hooks",
    "read_metrics",
    "read_outputs",
    "read_scale_options",
    "read_tracing",
    "read_triggers",
]

# A Go duration as Kubernetes writes metav1.Duration: "90s", "1m30s", "0.5h".
DURATION = re.compile(r"0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_seconds(text: str) -> float:
    """Seconds in a duration that ``DURATION`` accepts (Go's syntax, e.g. ``1m30s``)."""
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


TRIGGERS_FIELDS = ("http", "dapr", "inputs")
HTTP_TRIGGER_FIELDS = ("port", "route", "engine")
ROUTE_FIELDS = ("gatewayRef", "hostnames", "rules")
GATEWAY_REF_FIELDS = ("name", "namespace")
# DaprTrigger: DaprComponentRef (name, type, topic) + inputName; deadLetterTopic and metadata are funcd's.
DAPR_TRIGGER_FIELDS = ("name", "type", "topic", "inputName", "deadLetterTopic", "metadata")
INPUT_FIELDS = ("dapr",)
DAPR_REF_FIELDS = ("name", "type", "topic")
OUTPUT_FIELDS = ("dapr",)
DAPR_OUTPUT_FIELDS = ("name", "type", "topic", "metadata", "operation", "outputName")
# Dapr's ComponentSpec and its metadata items (NameValuePair).
COMPONENT_SPEC_FIELDS = ("type", "version", "ignoreErrors", "metadata", "initTimeout")
METADATA_ITEM_FIELDS = ("name", "value", "secretKeyRef", "envRef")
SECRET_KEY_REF_FIELDS = ("name", "key")
SCALE_OPTIONS_FIELDS = ("minReplicas", "maxReplicas", "keda", "knative")
KEDA_FIELDS = ("httpScaledObject", "scaledObject", "scaledJob", "triggers")
HTTP_SCALED_OBJECT_FIELDS = ("targetPendingRequests", "cooldownPeriod")
SCALED_OBJECT_FIELDS = ("pollingInterval", "cooldownPeriod", "advanced", "fallback")
SCALED_JOB_FIELDS = (
    "restartPolicy", "pollingInterval", "successfulJobsHistoryLimit", "failedJobsHistoryLimit",
    "scalingStrategy",
)  # fmt: skip
# KEDA's ScaleTriggers; `fallback` is the per-trigger field of older KEDA releases.
KEDA_TRIGGER_FIELDS = (
    "type", "name", "metadata", "authenticationRef", "metricType", "useCachedMetrics", "fallback",
)  # fmt: skip
AUTH_REF_FIELDS = ("name", "kind")
HOOKS_FIELDS = ("pre", "post", "policy")
TRACING_FIELDS = ("enabled", "provider", "tags", "baggage", "samplingRate")
METRICS_FIELDS = ("enabled", "path")
PROVIDER_FIELDS = ("name", "oapServer", "exporter")
EXPORTER_FIELDS = ("name", "endpoint", "headers", "compression", "timeout", "protocol")


def _present(d: Mapping[str, Any], key: str) -> bool:
    return d.get(key) is not None


# ---------------------------------------------------------------- triggers and outputs


def read_triggers(r: Reader, data: Any, path: str) -> Triggers:
    d = r.obj(data, path, TRIGGERS_FIELDS)
    dapr = []
    for i, item in enumerate(r.sequence(d.get("dapr"), join(path, "dapr"))):
        p = at(join(path, "dapr"), i)
        t = r.obj(item, p, DAPR_TRIGGER_FIELDS)
        dapr.append(
            DaprTrigger(
                name=r.string(t, "name", p, required=True),
                type=r.string(t, "type", p),
                topic=r.string(t, "topic", p),
                input_name=r.string(t, "inputName", p),
                dead_letter_topic=r.string(t, "deadLetterTopic", p),
                metadata=r.str_map(t.get("metadata"), join(p, "metadata")),
            )
        )
    inputs = []
    for i, item in enumerate(r.sequence(d.get("inputs"), join(path, "inputs"))):
        p = at(join(path, "inputs"), i)
        entry = r.obj(item, p, INPUT_FIELDS)
        ref = _dapr_ref(r, entry["dapr"], join(p, "dapr")) if _present(entry, "dapr") else None
        inputs.append(Input(dapr=ref))
    http = _http_trigger(r, d["http"], join(path, "http")) if _present(d, "http") else None
    return Triggers(http=http, dapr=tuple(dapr), inputs=tuple(inputs))


def _dapr_ref(r: Reader, data: Any, path: str) -> DaprRef:
    d = r.obj(data, path, DAPR_REF_FIELDS)
    return DaprRef(
        name=r.string(d, "name", path, required=True),
        type=r.string(d, "type", path),
        topic=r.string(d, "topic", path),
    )


def _http_trigger(r: Reader, data: Any, path: str) -> HttpTrigger:
    d = r.obj(data, path, HTTP_TRIGGER_FIELDS)
    port = r.port(d["port"], join(path, "port")) if _present(d, "port") else None
    engine = r.optional_choice(d, "engine", path, HTTP_ENGINES)
    route = None
    if _present(d, "route"):
        rp = join(path, "route")
        rd = r.obj(d["route"], rp, ROUTE_FIELDS)
        gateway = None
        if _present(rd, "gatewayRef"):
            gp = join(rp, "gatewayRef")
            g = r.obj(rd["gatewayRef"], gp, GATEWAY_REF_FIELDS)
            gateway = GatewayRef(r.string(g, "name", gp, required=True), r.string(g, "namespace", gp))
        rules = []
        for i, rule in enumerate(r.sequence(rd.get("rules"), join(rp, "rules"))):
            rules.append(r.mapping(rule, at(join(rp, "rules"), i)))
        hostnames = r.strings(rd.get("hostnames"), join(rp, "hostnames"))
        route = Route(gateway_ref=gateway, hostnames=hostnames, rules=tuple(rules))
    return HttpTrigger(port=port, route=route, engine=engine)


def read_outputs(r: Reader, data: Any, path: str) -> tuple[Output, ...]:
    out = []
    for i, item in enumerate(r.sequence(data, path)):
        p = at(path, i)
        entry = r.obj(item, p, OUTPUT_FIELDS)
        dapr = None
        if _present(entry, "dapr"):
            dp = join(p, "dapr")
            d = r.obj(entry["dapr"], dp, DAPR_OUTPUT_FIELDS)
            dapr = DaprOutput(
                name=r.string(d, "name", dp, required=True),
                type=r.string(d, "type", dp),
                topic=r.string(d, "topic", dp),
                metadata=r.str_map(d.get("metadata"), join(dp, "metadata")),
                operation=r.string(d, "operation", dp),
                output_name=r.string(d, "outputName", dp),
            )
        out.append(Output(dapr=dapr))
    return tuple(out)


# ---------------------------------------------------------------- Dapr components


def read_component_spec(r: Reader, data: Any, path: str) -> ComponentSpec:
    d = r.obj(data, path, COMPONENT_SPEC_FIELDS)
    items = []
    for i, item in enumerate(r.sequence(d.get("metadata"), join(path, "metadata"))):
        p = at(join(path, "metadata"), i)
        m = r.obj(item, p, METADATA_ITEM_FIELDS)
        value = m.get("value")
        if isinstance(value, float) and value != value:  # NaN cannot be written back as JSON
            r.fail(join(p, "value"), "a JSON value", "NaN")
        ref = None
        if _present(m, "secretKeyRef"):
            sp = join(p, "secretKeyRef")
            s = r.obj(m["secretKeyRef"], sp, SECRET_KEY_REF_FIELDS)
            if s.get("name") or s.get("key"):  # OpenFunction's controller writes an empty one
                ref = SecretKeyRef(r.string(s, "name", sp, required=True), r.string(s, "key", sp))
        items.append(
            MetadataItem(
                name=r.string(m, "name", p, required=True),
                value=value,
                secret_key_ref=ref,
                env_ref=r.string(m, "envRef", p),
            )
        )
    init_timeout = r.string(d, "initTimeout", path)
    if init_timeout and not DURATION.fullmatch(init_timeout):
        r.fail(join(path, "initTimeout"), "a duration such as '5s'", init_timeout)
    return ComponentSpec(
        type=r.string(d, "type", path, required=True),
        version=r.string(d, "version", path),
        metadata=tuple(items),
        ignore_errors=r.boolean(d, "ignoreErrors", path),
        init_timeout=init_timeout,
    )


# ---------------------------------------------------------------- scaling and hooks


def read_scale_options(r: Reader, data: Any, path: str) -> ScaleOptions | None:
    if data is None:
        return None
    d = r.obj(data, path, SCALE_OPTIONS_FIELDS)
    keda = _keda(r, d["keda"], join(path, "keda")) if _present(d, "keda") else None
    knative = r.str_map(d["knative"], join(path, "knative")) if _present(d, "knative") else None
    return ScaleOptions(
        min_replicas=r.integer(d, "minReplicas", path),
        max_replicas=r.integer(d, "maxReplicas", path),
        keda=keda,
        knative=knative,
    )


def _keda(r: Reader, data: Any, path: str) -> KedaScaleOptions:
    d = r.obj(data, path, KEDA_FIELDS)
    http = obj = job = None
    if _present(d, "httpScaledObject"):
        p = join(path, "httpScaledObject")
        h = r.obj(d["httpScaledObject"], p, HTTP_SCALED_OBJECT_FIELDS)
        http = HttpScaledObject(r.integer(h, "targetPendingRequests", p), r.integer(h, "cooldownPeriod", p))
    if _present(d, "scaledObject"):
        p = join(path, "scaledObject")
        s = r.obj(d["scaledObject"], p, SCALED_OBJECT_FIELDS)
        obj = KedaScaledObject(
            polling_interval=r.integer(s, "pollingInterval", p),
            cooldown_period=r.integer(s, "cooldownPeriod", p),
            advanced=r.opaque(s.get("advanced"), join(p, "advanced")),
            fallback=r.opaque(s.get("fallback"), join(p, "fallback")),
        )
    if _present(d, "scaledJob"):
        p = join(path, "scaledJob")
        j = r.obj(d["scaledJob"], p, SCALED_JOB_FIELDS)
        job = KedaScaledJob(
            restart_policy=r.optional_choice(j, "restartPolicy", p, RESTART_POLICIES),
            polling_interval=r.integer(j, "pollingInterval", p),
            successful_jobs_history_limit=r.integer(j, "successfulJobsHistoryLimit", p),
            failed_jobs_history_limit=r.integer(j, "failedJobsHistoryLimit", p),
            scaling_strategy=r.opaque(j.get("scalingStrategy"), join(p, "scalingStrategy")),
        )
    triggers = []
    for i, item in enumerate(r.sequence(d.get("triggers"), join(path, "triggers"))):
        p = at(join(path, "triggers"), i)
        t = r.obj(item, p, KEDA_TRIGGER_FIELDS)
        auth = None
        if _present(t, "authenticationRef"):
            ap = join(p, "authenticationRef")
            a = r.obj(t["authenticationRef"], ap, AUTH_REF_FIELDS)
            auth = AuthenticationRef(r.string(a, "name", ap, required=True), r.string(a, "kind", ap))
        r.integer(t, "fallback", p)
        triggers.append(
            KedaTrigger(
                type=r.string(t, "type", p, required=True),
                name=r.string(t, "name", p),
                metadata=r.str_map(t.get("metadata"), join(p, "metadata")),
                authentication_ref=auth,
                metric_type=r.optional_choice(t, "metricType", p, METRIC_TYPES),
                use_cached_metrics=r.boolean(t, "useCachedMetrics", p),
            )
        )
    return KedaScaleOptions(http, obj, job, tuple(triggers))


def read_hooks(r: Reader, data: Any, path: str) -> Hooks | None:
    if data is None:
        return None
    d = r.obj(data, path, HOOKS_FIELDS)
    return Hooks(
        pre=r.strings(d.get("pre"), join(path, "pre")),
        post=r.strings(d.get("post"), join(path, "post")),
        policy=r.choice(d, "policy", path, HOOK_POLICIES, "Append"),
    )


# ---------------------------------------------------------------- tracing


def read_tracing(r: Reader, data: Any, path: str) -> Tracing | None:
    """OpenFunction's TracingConfig (``tracing``, v1beta1's ``pluginsTracing``); ``None`` when absent."""
    if data is None:
        return None
    d = r.obj(data, path, TRACING_FIELDS)
    pp = join(path, "provider")
    provider = r.obj(d.get("provider"), pp, PROVIDER_FIELDS)  # the controller may write null
    exporter = None
    if _present(provider, "exporter"):
        ep = join(pp, "exporter")
        e = r.obj(provider["exporter"], ep, EXPORTER_FIELDS)
        exporter = Exporter(
            name=r.string(e, "name", ep) or "otlp",
            endpoint=r.string(e, "endpoint", ep),
            protocol=r.string(e, "protocol", ep) or "grpc",
            headers=r.string(e, "headers", ep),
            compression=r.string(e, "compression", ep),
            timeout=r.string(e, "timeout", ep),
        )
    return Tracing(
        enabled=r.boolean(d, "enabled", path),
        provider=r.choice(provider, "name", pp, TRACING_PROVIDERS, "opentelemetry"),
        oap_server=r.string(provider, "oapServer", pp),
        exporter=exporter,
        tags=r.str_map(d.get("tags"), join(path, "tags")),
        baggage=r.str_map(d.get("baggage"), join(path, "baggage")),
        sampling_rate=_sampling_rate(r, d.get("samplingRate"), join(path, "samplingRate")),
    )


def _sampling_rate(r: Reader, value: Any, path: str) -> float:
    """A number from 0 to 1, or a string holding one (Dapr's Configuration writes it as a string)."""
    if value is None:
        return 1.0
    try:
        rate = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        rate = math.nan
    if not 0.0 <= rate <= 1.0:  # also false for NaN
        r.fail(path, "a sampling rate from 0 to 1, e.g. 0.1", value)
        return 1.0
    return rate


# ---------------------------------------------------------------- metrics


def read_metrics(r: Reader, data: Any, path: str) -> Metrics | None:
    """funcd's ``metrics`` section (``enabled``, ``path``); ``None`` when absent."""
    if data is None:
        return None
    d = r.obj(data, path, METRICS_FIELDS)
    where = join(path, "path")
    metrics_path = r.string(d, "path", path) or "/metrics"
    if not metrics_path.startswith("/") or any(c.isspace() for c in metrics_path):
        r.fail(where, "an absolute URL path such as '/metrics'", metrics_path)
    return Metrics(enabled=r.boolean(d, "enabled", path), path=metrics_path)
