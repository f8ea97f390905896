"""``dapr.mode: container``: daprd in standalone mode beside the function, reading the Function's
Dapr resources from a Secret. Pure."""

from __future__ import annotations

import json
from typing import Any

from functions_framework.model import Function, FunctionContext

from .dapr import (
    COMPONENTS_PATH,
    CONFIG_PATH,
    DAPR_GRPC_PORT,
    DAPR_HTTP_PORT,
    DAPR_METRICS_PORT,
    HEALTH_PROBE_INTERVAL,
    HEALTH_THRESHOLD,
    HTTP_APP_MAX_CONCURRENCY,
    READY_PATH,
    app_port,
    tracing_on,
)
from .meta import app_id, object_meta

__all__ = ["dapr_secret", "daprd_container", "daprd_volumes", "secret_refs"]


def secret_refs(resources: list[dict[str, Any]]) -> list[str]:
    """The components with a value read from a secret: a standalone daprd has no secret store to
    read it from (``envRef`` is not resolved by daprd 1.15 in standalone mode either)."""
    return [
        obj["metadata"]["name"]
        for obj in resources
        if obj["kind"] == "Component" and any("secretKeyRef" in m for m in obj["spec"].get("metadata", []))
    ]


def secret_name(fn: Function) -> str:
    """The Secret that holds the resources of a daprd in container mode."""
    return f"{fn.metadata.name}-dapr"


def dapr_secret(fn: Function, resources: list[dict[str, Any]]) -> dict[str, Any]:
    """The Secret with the Function's Dapr resources, one YAML file each, for ``--resources-path``.
    The Configuration goes to ``config.yaml``, mounted apart (``--config``). The files are JSON, which
    daprd's YAML reader takes as it is, and which is written 20 times faster than YAML."""
    data: dict[str, str] = {}
    for obj in resources:
        doc = {
            "apiVersion": obj["apiVersion"],
            "kind": obj["kind"],
            "metadata": {"name": obj["metadata"]["name"]},
        }
        doc.update((k, v) for k, v in obj.items() if k not in doc)
        key = "config.yaml" if obj["kind"] == "Configuration" else f"{obj['metadata']['name']}.yaml"
        data[key] = json.dumps(doc) + "\n"
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": object_meta(fn, secret_name(fn), "dapr-resources"),
        "type": "Opaque",
        "stringData": data,
    }


def daprd_container(
    fn: Function, ctx: FunctionContext, security: dict[str, Any], image: str
) -> dict[str, Any]:
    """daprd in standalone mode, calling the function (when it has inputs) over the pod's loopback."""
    args = [
        "--mode", "standalone",
        "--app-id", app_id(fn),
        "--dapr-http-port", str(DAPR_HTTP_PORT),
        "--dapr-grpc-port", str(DAPR_GRPC_PORT),
        "--metrics-port", str(DAPR_METRICS_PORT),
        "--resources-path", COMPONENTS_PATH,
        "--log-as-json",
    ]  # fmt: skip
    if ctx.inputs:
        args += [
            "--app-port", str(app_port(ctx)),
            "--app-protocol", ctx.app_protocol,
            "--app-channel-address", "127.0.0.1",
            "--enable-app-health-check",
            "--app-health-check-path", READY_PATH,
            "--app-health-probe-interval", HEALTH_PROBE_INTERVAL,
            "--app-health-threshold", HEALTH_THRESHOLD,
        ]  # fmt: skip
        if ctx.app_protocol == "http":
            args += ["--app-max-concurrency", HTTP_APP_MAX_CONCURRENCY]
    if tracing_on(ctx):
        args += ["--config", f"{CONFIG_PATH}/config.yaml"]
    mounts = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "dapr-components", "mountPath": COMPONENTS_PATH, "readOnly": True},
    ]
    if tracing_on(ctx):
        mounts.append({"name": "dapr-config", "mountPath": CONFIG_PATH, "readOnly": True})

    def probe() -> dict[str, Any]:
        return {"httpGet": {"path": "/v1.0/healthz", "port": DAPR_HTTP_PORT}, "periodSeconds": 5}

    return {
        "name": "daprd",
        "image": image,
        "command": ["/daprd"],
        "args": args,
        "ports": [
            {"name": "dapr-http", "containerPort": DAPR_HTTP_PORT},
            {"name": "dapr-grpc", "containerPort": DAPR_GRPC_PORT},
            {"name": "dapr-metrics", "containerPort": DAPR_METRICS_PORT},
        ],
        "livenessProbe": probe(),
        "readinessProbe": probe(),
        "securityContext": security,
        "volumeMounts": mounts,
    }


def daprd_volumes(
    fn: Function, ctx: FunctionContext, resources: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The volumes of the daprd container: resources and, with tracing, the Configuration."""
    files = [
        {"key": f"{o['metadata']['name']}.yaml", "path": f"{o['metadata']['name']}.yaml"}
        for o in resources
        if o["kind"] != "Configuration"
    ]
    source: dict[str, Any] = {"secretName": secret_name(fn)}
    volumes: list[dict[str, Any]] = [
        {"name": "dapr-components", "secret": {**source, "items": files}} if files else
        {"name": "dapr-components", "emptyDir": {}}
    ]  # fmt: skip
    if tracing_on(ctx):
        item = {"key": "config.yaml", "path": "config.yaml"}
        volumes.append({"name": "dapr-config", "secret": {**source, "items": [item]}})
    return volumes
