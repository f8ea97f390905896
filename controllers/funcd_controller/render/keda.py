"""KEDA: a ScaledObject (Deployment, StatefulSet) or ScaledJob (Job) when ``scaleOptions`` is given,
with the triggers as written or derived from the inputs' components. Pure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from functions_framework.model import (
    Component,
    ComponentSpec,
    Function,
    FunctionContext,
    KedaTrigger,
    ScaleOptions,
    Serving,
)

from .dapr import inline_components
from .merge import plain_copy
from .meta import app_id, object_meta

__all__ = ["Scaler", "scaler"]

REDIS_LAG = "5"
"""Stream entries not yet read by the consumer group, per replica (lag-based: 0 scales to zero)."""
KAFKA_LAG = "10"
RABBITMQ_QUEUE_LENGTH = "5"
NATS_LAG = "10"


def _meta(spec: ComponentSpec) -> dict[str, str]:
    """The component's plain metadata values (secret and env references cannot be read here)."""
    return {m.name: str(m.value) for m in spec.metadata if m.secret_key_ref is None and not m.env_ref}


def _redis(fn: Function, c: Component, m: dict[str, str]) -> dict[str, str] | str:
    if "redisHost" not in m:
        return "its component has no plain 'redisHost' value"
    out = {
        "address": m["redisHost"],
        "stream": c.topic,
        "consumerGroup": m.get("consumerID") or app_id(fn),
        "lagCount": REDIS_LAG,
    }
    if m.get("enableTLS") == "true":
        out["enableTLS"] = "true"
    return out


def _kafka(fn: Function, c: Component, m: dict[str, str]) -> dict[str, str] | str:
    topic = c.topic or m.get("topics", "").split(",")[0].strip()
    group = m.get("consumerGroup") or m.get("consumerID") or app_id(fn)
    if "brokers" not in m or not topic:
        return "its component has no plain 'brokers' value or no topic"
    return {
        "bootstrapServers": m["brokers"],
        "consumerGroup": group,
        "topic": topic,
        "lagThreshold": KAFKA_LAG,
    }


def _rabbitmq(fn: Function, c: Component, m: dict[str, str]) -> dict[str, str] | str:
    host = m.get("connectionString") or m.get("host")
    if not host:
        return "its component has no plain 'connectionString' or 'host' value"
    queue = f"{m.get('consumerID') or app_id(fn)}-{c.topic}" if c.topic else m.get("queueName", "")
    if not queue:
        return "its component names no queue"
    return {"host": host, "queueName": queue, "mode": "QueueLength", "value": RABBITMQ_QUEUE_LENGTH}


def _jetstream(fn: Function, c: Component, m: dict[str, str]) -> dict[str, str] | str:
    url, stream, consumer = m.get("natsURL", ""), m.get("streamName", ""), m.get("durableName", "")
    if not (url and stream and consumer):
        return "its component needs plain 'natsURL', 'streamName' and 'durableName' values"
    host = url.split("://", 1)[-1].split(":", 1)[0]
    return {
        "natsServerMonitoringEndpoint": f"{host}:8222",
        "account": "$G",
        "stream": stream,
        "consumer": consumer,
        "lagThreshold": NATS_LAG,
    }


Derive = Callable[[Function, Component, dict[str, str]], "dict[str, str] | str"]
SCALERS: dict[str, tuple[str, Derive]] = {
    "pubsub.redis": ("redis-streams", _redis),
    "pubsub.kafka": ("kafka", _kafka),
    "bindings.kafka": ("kafka", _kafka),
    "pubsub.rabbitmq": ("rabbitmq", _rabbitmq),
    "bindings.rabbitmq": ("rabbitmq", _rabbitmq),
    "pubsub.jetstream": ("nats-jetstream", _jetstream),
}


def _written(t: KedaTrigger) -> dict[str, Any]:
    out: dict[str, Any] = {"type": t.type}
    if t.name:
        out["name"] = t.name
    out["metadata"] = dict(t.metadata)
    if t.authentication_ref is not None:
        ref = {"name": t.authentication_ref.name}
        if t.authentication_ref.kind:
            ref["kind"] = t.authentication_ref.kind
        out["authenticationRef"] = ref
    if t.metric_type is not None:
        out["metricType"] = t.metric_type
    if t.use_cached_metrics:
        out["useCachedMetrics"] = True
    return out


def _derived(fn: Function, ctx: FunctionContext) -> tuple[list[dict[str, Any]], list[str]]:
    """Triggers derived from the inputs, and why the others have none."""
    defined = inline_components(fn)
    triggers: list[dict[str, Any]] = []
    why: list[str] = []
    for c in ctx.inputs.values():
        if c.component_type not in SCALERS:
            why.append(f"input {c.name!r} ({c.component_type}): KEDA has no scaler funcd derives for it")
            continue
        spec = defined.get(c.component_name)
        if spec is None:
            why.append(f"input {c.name!r}: component {c.component_name!r} is not defined in the Function")
            continue
        kind, derive = SCALERS[c.component_type]
        found = derive(fn, c, _meta(spec))
        if isinstance(found, str):
            why.append(f"input {c.name!r} ({c.component_type}): {found}")
        else:
            triggers.append({"type": kind, "name": c.name, "metadata": found})
    return triggers, why


@dataclass(frozen=True)
class Scaler:
    """The rendered scaler (or None) and, when there is none or it misses inputs, why."""

    obj: dict[str, Any] | None
    """The ScaledObject or ScaledJob, or None."""
    problems: tuple[str, ...] = ()
    """Why inputs have no trigger (empty: all scaled, or triggers given)."""


def _counts(spec: dict[str, Any], scale: ScaleOptions) -> None:
    if scale.min_replicas is not None:
        spec["minReplicaCount"] = scale.min_replicas
    if scale.max_replicas is not None:
        spec["maxReplicaCount"] = scale.max_replicas


def scaler(fn: Function, ctx: FunctionContext, template: dict[str, Any]) -> Scaler:
    """The scaler of a Function with ``scaleOptions``; ``template`` is the pod template (ScaledJob)."""
    serving = fn.spec.serving or Serving()
    scale = serving.scale_options
    if scale is None:
        return Scaler(None)
    keda = scale.keda
    problems: list[str] = []
    if keda is not None and keda.triggers:
        triggers = [_written(t) for t in keda.triggers]
    else:
        triggers, problems = _derived(fn, ctx)
        if not ctx.inputs:
            problems.append("the function has no Dapr inputs to derive a KEDA trigger from")
    if not triggers:
        return Scaler(None, (*problems, "set spec.serving.scaleOptions.keda.triggers"))
    meta = object_meta(fn, fn.metadata.name, "scaler")
    spec: dict[str, Any]
    if serving.workload_type == "Job":
        job = keda.scaled_job if keda is not None else None
        spec = {"jobTargetRef": {"template": template}}
        if job is not None:
            for key, value in (
                ("pollingInterval", job.polling_interval),
                ("successfulJobsHistoryLimit", job.successful_jobs_history_limit),
                ("failedJobsHistoryLimit", job.failed_jobs_history_limit),
                (
                    "scalingStrategy",
                    plain_copy(job.scaling_strategy) if job.scaling_strategy else None,
                ),
            ):
                if value is not None:
                    spec[key] = value
        _counts(spec, scale)
        spec["triggers"] = triggers
        return Scaler({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledJob", "metadata": meta, "spec": spec},
                      tuple(problems))  # fmt: skip
    kind = serving.workload_type
    spec = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": fn.metadata.name}}
    so = keda.scaled_object if keda is not None else None
    if so is not None:
        for key, value in (
            ("pollingInterval", so.polling_interval),
            ("cooldownPeriod", so.cooldown_period),
            ("advanced", plain_copy(so.advanced) if so.advanced else None),
            ("fallback", plain_copy(so.fallback) if so.fallback else None),
        ):
            if value is not None:
                spec[key] = value
    _counts(spec, scale)
    spec["triggers"] = triggers
    obj = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": meta, "spec": spec}
    return Scaler(obj, tuple(problems))
