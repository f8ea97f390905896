"""The workload: the pod template (container ``function``, its security context and the user's
template), as a Deployment, StatefulSet or Job, and the Service of the HTTP trigger. Pure."""

from __future__ import annotations

import json
import math
from typing import Any

from functions_framework.model import DEFAULT_HTTP_PORT, Function, FunctionContext, Serving, dump_context
from functions_framework.model.sections import duration_seconds

from .dapr import DAPR_GRPC_PORT, DAPR_HTTP_PORT, dapr_annotations
from .merge import merge
from .meta import labels, object_meta, selector_labels
from .standalone import daprd_container, daprd_volumes

__all__ = ["CONTAINER", "container_security", "metrics_annotations", "pod_template", "service", "workload"]

CONTAINER = "function"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
RUN_AS = 65532
"""The non-root user and group the pod runs as unless the template says otherwise."""


def container_security() -> dict[str, Any]:
    """A container security context that passes the ``restricted`` Pod Security Standard."""
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _env(ctx: FunctionContext, serving: Serving, container_mode: bool) -> list[dict[str, Any]]:
    text = json.dumps(dump_context(ctx), separators=(",", ":"))
    env: list[dict[str, Any]] = [
        {"name": "FUNC_CONTEXT_V1BETA2", "value": text},
        {"name": "FUNC_CONTEXT", "value": text},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    if container_mode:
        env += [
            {"name": "DAPR_GRPC_PORT", "value": str(DAPR_GRPC_PORT)},
            {"name": "DAPR_HTTP_PORT", "value": str(DAPR_HTTP_PORT)},
        ]
    reserved = {e["name"] for e in env}
    env.extend({"name": k, "value": v} for k, v in serving.params.items() if k not in reserved)
    return env


def metrics_annotations(ctx: FunctionContext) -> dict[str, str]:
    """``prometheus.io/*`` for a function that serves metrics: the runtime serves them on the HTTP
    port, async-only functions included."""
    if ctx.metrics is None or not ctx.metrics.enabled:
        return {}
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(ctx.http_port or DEFAULT_HTTP_PORT),
        "prometheus.io/path": ctx.metrics.path,
    }


def _function_container(
    fn: Function, ctx: FunctionContext, serving: Serving, container_mode: bool
) -> dict[str, Any]:
    port = ctx.http_port or DEFAULT_HTTP_PORT
    ports = [{"name": "http", "containerPort": port}]
    if ctx.inputs and ctx.app_protocol == "grpc":
        ports.append({"name": "app-grpc", "containerPort": ctx.dapr_port})
    return {
        "name": CONTAINER,
        "image": fn.spec.image,
        "args": ["--host", "0.0.0.0", "--port", str(port)],
        "env": _env(ctx, serving, container_mode),
        "ports": ports,
        "livenessProbe": {"httpGet": {"path": HEALTH_PATH, "port": "http"}, "periodSeconds": 10},
        "readinessProbe": {"httpGet": {"path": READY_PATH, "port": "http"}, "periodSeconds": 1},
        "securityContext": container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def pod_template(
    fn: Function, ctx: FunctionContext, dapr_objects: list[dict[str, Any]], daprd_image: str
) -> dict[str, Any]:
    """The pod template: labels, Dapr annotations (user annotations win), the spec merged with the
    user's ``template``."""
    serving = fn.spec.serving or Serving()
    container_mode = ctx.uses_dapr and serving.dapr.mode == "container"
    annotations = dapr_annotations(fn, ctx) if ctx.uses_dapr and not container_mode else {}
    annotations.update(metrics_annotations(ctx))
    annotations.update(serving.annotations)
    containers = [_function_container(fn, ctx, serving, container_mode)]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    if container_mode:
        containers.append(daprd_container(fn, ctx, container_security(), daprd_image))
        volumes += daprd_volumes(fn, ctx, dapr_objects)
    spec: dict[str, Any] = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": containers,
        "volumes": volumes,
    }
    if fn.spec.image_credentials:
        spec["imagePullSecrets"] = [{"name": fn.spec.image_credentials}]
    if serving.workload_type == "Job":
        restart = None
        keda = serving.scale_options.keda if serving.scale_options else None
        if keda is not None and keda.scaled_job is not None:
            restart = keda.scaled_job.restart_policy
        spec["restartPolicy"] = restart if restart in ("OnFailure", "Never") else "OnFailure"
    if serving.template:
        spec = merge(spec, serving.template)
    # managed-by and component as on the workload: a PodMonitor selects functions' pods by them.
    metadata: dict[str, Any] = {"labels": {**serving.labels, **labels(fn, "function")}}
    if annotations:
        metadata["annotations"] = annotations
    return {"metadata": metadata, "spec": spec}


def workload(fn: Function, template: dict[str, Any], replicas: int | None) -> dict[str, Any]:
    """The Deployment, StatefulSet or Job that runs ``template``. ``replicas`` None: left to KEDA."""
    serving = fn.spec.serving or Serving()
    kind = serving.workload_type
    meta = object_meta(fn, fn.metadata.name, "function", dict(serving.labels))
    if kind == "Job":
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": {"template": template}}
    spec: dict[str, Any] = {}
    if replicas is not None:
        spec["replicas"] = replicas
    if serving.timeout and kind == "Deployment":
        spec["progressDeadlineSeconds"] = max(1, math.ceil(duration_seconds(serving.timeout)))
    spec["selector"] = {"matchLabels": selector_labels(fn)}
    if kind == "StatefulSet":
        spec["serviceName"] = fn.metadata.name
    spec["template"] = template
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": spec}


def service(fn: Function, ctx: FunctionContext) -> dict[str, Any]:
    """The ClusterIP Service of the HTTP trigger: port 80 to the container's ``http`` port."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(fn, fn.metadata.name, "service"),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(fn),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
