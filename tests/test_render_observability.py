"""Render of ``serving.tracing`` and ``serving.metrics``: daprd traces to the function's collector at the
function's sampling rate (annotations and container mode), pods carry the Prometheus annotations and
named ports, and the optional PodMonitor and ServiceMonitor in manifests/monitoring/ select what render
makes. daprd taking the rendered Configuration for real: tests/e2e/test_render_daprd.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from funcd_controller.render import render, render_all
from funcd_controller.render.dapr import otel_target

from functions_framework.model import Exporter, parse_context, parse_function

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "manifests" / "monitoring"


def function(serving: dict[str, Any], name: str = "fn") -> dict[str, Any]:
    return {
        "apiVersion": "funcd.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": name, "namespace": "team", "uid": "u-1"},
        "spec": {"image": "funcd/fn:1", "serving": serving},
    }


def traced(endpoint: str, protocol: str = "grpc", **extra: Any) -> dict[str, Any]:
    exporter = {"name": "otlp", "endpoint": endpoint, "protocol": protocol}
    return {"enabled": True, "provider": {"name": "opentelemetry", "exporter": exporter}, **extra}


PUBSUB = {"events": {"type": "pubsub.redis", "metadata": [{"name": "redisHost", "value": "redis:6379"}]}}
PUBLISHER = {"outputs": [{"dapr": {"name": "events", "topic": "t"}}], "pubsub": PUBSUB}
CONSUMER = {"triggers": {"dapr": [{"name": "events", "topic": "t"}]}, "pubsub": PUBSUB}


def objects_of(serving: dict[str, Any], name: str = "fn") -> list[dict[str, Any]]:
    return render_all(parse_function(function(serving, name)))


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [o for o in objects if o["kind"] == kind]
    return found


def pod_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return by_kind(objects, "Deployment")["spec"]["template"]  # type: ignore[no-any-return]


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [c for c in pod["spec"]["containers"] if c["name"] == name]
    return found


# ---------------------------------------------------------------- tracing


@pytest.mark.parametrize(
    ("endpoint", "protocol", "expected"),
    [
        ("jaeger:4317", "grpc", ("jaeger:4317", False, "grpc", "")),
        ("http://jaeger.obs:4317", "grpc", ("jaeger.obs:4317", False, "grpc", "")),
        ("https://otel.example.com:4317", "grpc", ("otel.example.com:4317", True, "grpc", "")),
        ("http://otel:4318/v1/traces", "http/protobuf", ("otel:4318", False, "http", "/v1/traces")),
        ("HTTPS://otel:443/", "http/protobuf", ("otel:443", True, "http", "/")),
    ],
)
def test_the_functions_endpoint_becomes_daprds_host_port_and_security(
    endpoint: str, protocol: str, expected: tuple[str, bool, str, str]
) -> None:
    target = otel_target(Exporter(endpoint=endpoint, protocol=protocol))
    assert (target.address, target.secure, target.protocol, target.path) == expected


def test_annotations_mode_gets_a_configuration_with_the_same_endpoint_and_rate() -> None:
    tracing = traced("http://jaeger.obs:4317", samplingRate=0.25)
    objects = objects_of({**PUBLISHER, "tracing": tracing})
    config = by_kind(objects, "Configuration")
    assert config["metadata"]["name"] == "fn" and config["metadata"]["namespace"] == "team"
    assert config["apiVersion"] == "dapr.io/v1alpha1"
    assert config["spec"] == {
        "tracing": {
            "samplingRate": "0.25",
            "otel": {"endpointAddress": "jaeger.obs:4317", "isSecure": False, "protocol": "grpc"},
        }
    }
    annotations = pod_of(objects)["metadata"]["annotations"]
    assert annotations["dapr.io/config"] == "fn"
    # The function reads the same endpoint and rate from its context.
    env = {e["name"]: e for e in container(pod_of(objects), "function")["env"]}
    ctx = parse_context(json.loads(env["FUNC_CONTEXT"]["value"]))
    assert ctx.tracing is not None and ctx.tracing.sampling_rate == 0.25
    assert ctx.tracing.exporter is not None and ctx.tracing.exporter.endpoint == "http://jaeger.obs:4317"


def test_an_http_protobuf_exporter_gives_daprd_the_http_protocol_and_every_trace_by_default() -> None:
    objects = objects_of({**PUBLISHER, "tracing": traced("https://otel:4318/v1/traces", "http/protobuf")})
    tracing = by_kind(objects, "Configuration")["spec"]["tracing"]
    assert tracing == {
        "samplingRate": "1",
        "otel": {"endpointAddress": "otel:4318", "isSecure": True, "protocol": "http"},
    }


def test_an_endpoint_path_daprd_cannot_use_is_noted() -> None:
    fn = parse_function(
        function({**PUBLISHER, "tracing": traced("http://gw:80/otlp/v1/traces", "http/protobuf")})
    )
    notes = [n for n in render(fn).notes if n.reason == "TracingPathIgnored"]
    assert len(notes) == 1 and "'/otlp/v1/traces'" in notes[0].message
    fine = parse_function(
        function({**PUBLISHER, "tracing": traced("http://gw:4318/v1/traces", "http/protobuf")})
    )
    assert not [n for n in render(fine).notes if n.reason == "TracingPathIgnored"]


def test_container_mode_gives_daprd_the_same_configuration_as_its_config_file() -> None:
    serving = {
        **CONSUMER,
        "dapr": {"mode": "container"},
        "tracing": traced("http://10.0.0.1:4317", samplingRate=0.5),
    }
    objects = objects_of(serving)
    assert "Configuration" not in [o["kind"] for o in objects]  # no Dapr control plane to read it
    secret = by_kind(objects, "Secret")
    config = json.loads(secret["stringData"]["config.yaml"])
    assert config["kind"] == "Configuration" and config["metadata"] == {"name": "fn"}
    assert config["spec"]["tracing"] == {
        "samplingRate": "0.5",
        "otel": {"endpointAddress": "10.0.0.1:4317", "isSecure": False, "protocol": "grpc"},
    }
    pod = pod_of(objects)
    assert "dapr.io/config" not in (pod["metadata"].get("annotations") or {})
    daprd = container(pod, "daprd")
    args = daprd["args"]
    path = args[args.index("--config") + 1]
    [mount] = [m for m in daprd["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
    [volume] = [v for v in pod["spec"]["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert {"key": "config.yaml", "path": path.rsplit("/", 1)[1]} in volume["secret"]["items"]


def test_tracing_off_renders_no_configuration_and_pods_know_their_name_and_namespace() -> None:
    for tracing in (None, {"enabled": False, "provider": {"name": "opentelemetry"}}):
        serving = {**PUBLISHER, **({"tracing": tracing} if tracing else {})}
        objects = objects_of(serving)
        assert "Configuration" not in [o["kind"] for o in objects]
        pod = pod_of(objects)
        assert "dapr.io/config" not in pod["metadata"]["annotations"]
        env = {e["name"]: e for e in container(pod, "function")["env"]}
        assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


# ---------------------------------------------------------------- metrics


def test_metrics_annotate_the_pod_with_the_http_port_and_path() -> None:
    objects = objects_of({"triggers": {"http": {"port": 8081}}, "metrics": {"enabled": True, "path": "/m"}})
    pod = pod_of(objects)
    annotations = pod["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8081",
        "prometheus.io/path": "/m",
    }
    ports = container(pod, "function")["ports"]
    assert {"name": "http", "containerPort": 8081} in ports
    service = by_kind(objects, "Service")
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]


def test_an_async_only_function_serves_metrics_on_a_named_http_port_without_a_service() -> None:
    serving = {**CONSUMER, "dapr": {"mode": "container"}, "metrics": {"enabled": True}}
    objects = objects_of(serving)
    assert "Service" not in [o["kind"] for o in objects]
    pod = pod_of(objects)
    annotations = pod["metadata"]["annotations"]
    port = int(annotations["prometheus.io/port"])
    assert annotations["prometheus.io/path"] == "/metrics"
    assert {"name": "http", "containerPort": port} in container(pod, "function")["ports"]


def test_metrics_off_adds_no_prometheus_annotations_and_the_users_win() -> None:
    for metrics in (None, {"enabled": False}):
        objects = objects_of({"triggers": {"http": {}}, **({"metrics": metrics} if metrics else {})})
        assert not any(
            k.startswith("prometheus.io/") for k in pod_of(objects)["metadata"].get("annotations", {})
        )
    objects = objects_of({"metrics": {"enabled": True}, "annotations": {"prometheus.io/scrape": "false"}})
    assert pod_of(objects)["metadata"]["annotations"]["prometheus.io/scrape"] == "false"


# ---------------------------------------------------------------- manifests/monitoring


def monitoring_objects() -> dict[str, dict[str, Any]]:
    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    out = {}
    for name in [*kustomization["resources"], "servicemonitor.yaml"]:
        obj = yaml.safe_load((MONITORING / name).read_text())
        out[obj["kind"]] = obj
    return out


def test_the_default_kustomization_leaves_monitoring_out() -> None:
    default = yaml.safe_load((ROOT / "manifests" / "kustomization.yaml").read_text())
    assert not any("monitoring" in r for r in default["resources"])
    assert set(monitoring_objects()) == {"PodMonitor", "ServiceMonitor"}


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels", "matchExpressions"}, selector
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        op, key = expr["operator"], expr["key"]
        if op == "Exists" and key not in labels:
            return False
        if op == "In" and labels.get(key) not in expr["values"]:
            return False
        assert op in ("Exists", "In"), expr
    return True


def _scraped(endpoint: dict[str, Any], annotations: dict[str, str]) -> str | None:
    """The metrics path the endpoint scrapes from a target with these pod annotations, or None when
    its ``keep`` relabelings drop it (the relabelings Prometheus would apply, on annotations)."""
    path = endpoint.get("path", "/metrics")
    for rule in endpoint.get("relabelings") or []:
        (source,) = rule["sourceLabels"]
        prefix = "__meta_kubernetes_pod_annotation_"
        assert source.startswith(prefix), rule
        key = next(
            (k for k in annotations if re.sub(r"[^a-zA-Z0-9_]", "_", k) == source[len(prefix) :]), None
        )
        value = annotations.get(key, "") if key else ""
        matched = re.fullmatch(rule.get("regex", "(.*)"), value)
        if rule.get("action", "replace") == "keep":
            if not matched:
                return None
        elif rule["targetLabel"] == "__metrics_path__" and matched:
            path = matched.expand(rule.get("replacement", "$1").replace("$1", r"\1"))
    return str(path)


def test_the_pod_monitor_scrapes_functions_that_serve_metrics_at_their_path() -> None:
    monitor = monitoring_objects()["PodMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"any": True}
    [function_endpoint] = [e for e in spec["podMetricsEndpoints"] if e["port"] == "http"]
    for serving in (
        {"triggers": {"http": {}}, "metrics": {"enabled": True, "path": "/custom"}},
        {**CONSUMER, "dapr": {"mode": "container"}, "metrics": {"enabled": True, "path": "/custom"}},
    ):
        pod = pod_of(objects_of(serving))
        assert _matches(spec["selector"], pod["metadata"]["labels"])
        assert "http" in {p["name"] for p in container(pod, "function")["ports"]}
        assert _scraped(function_endpoint, pod["metadata"]["annotations"]) == "/custom"
    quiet = pod_of(objects_of({"triggers": {"http": {}}}))
    assert _matches(spec["selector"], quiet["metadata"]["labels"])
    assert _scraped(function_endpoint, quiet["metadata"].get("annotations", {})) is None
    # daprd's own metrics, where the pod has a daprd container (container mode) with its named port.
    [daprd_endpoint] = [e for e in spec["podMetricsEndpoints"] if e["port"] == "dapr-metrics"]
    pod = pod_of(objects_of({**CONSUMER, "dapr": {"mode": "container"}}))
    assert "dapr-metrics" in {p["name"] for p in container(pod, "daprd")["ports"]}
    assert _scraped(daprd_endpoint, {}) == "/"


def test_the_service_monitor_scrapes_the_http_services_of_functions() -> None:
    monitor = monitoring_objects()["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"any": True}
    [endpoint] = spec["endpoints"]
    objects = objects_of({"triggers": {"http": {}}, "metrics": {"enabled": True, "path": "/m"}})
    service = by_kind(objects, "Service")
    assert _matches(spec["selector"], service["metadata"]["labels"])
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    pod = pod_of(objects)
    assert _matches({"matchLabels": service["spec"]["selector"]}, pod["metadata"]["labels"])
    assert _scraped(endpoint, pod["metadata"]["annotations"]) == "/m"
    for obj in objects:  # only the Service of a function is selected
        if obj["kind"] != "Service":
            assert not _matches(spec["selector"], obj["metadata"]["labels"]), obj["kind"]
