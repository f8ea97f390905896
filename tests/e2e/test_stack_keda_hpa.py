"""KEDA scales a Deployment of real pods 1 -> 3 through the HPA, which reads the redis-streams
scaler's value from KEDA's metrics adapter behind the apiserver's aggregation layer."""

from __future__ import annotations

import json
import time
import urllib.parse
import uuid
from typing import Any

import pytest

from tests.e2e.stack_keda_adapter import EXTERNAL_METRICS, KedaMetricsAdapter
from tests.e2e.stack_kube import KedaOperator, Kubectl
from tests.e2e.stack_node import Node
from tests.e2e.stack_procs import wait_until
from tests.e2e.stack_redis import RedisServer

pytestmark = pytest.mark.e2e

LAG_PER_REPLICA = 2
MAX_REPLICAS = 3


def worker(namespace: str, image: str) -> dict[str, Any]:
    """One probe pod serving HTTP on 8080, ready once it answers."""
    container = {
        "name": "probe",
        "image": image,
        "imagePullPolicy": "Never",
        "args": ["serve", "8080"],
        "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "worker", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "worker"}},
            "template": {
                "metadata": {"labels": {"app": "worker"}},
                "spec": {"containers": [container], "terminationGracePeriodSeconds": 5},
            },
        },
    }


def scaled_object(namespace: str, redis_address: str, stream: str, group: str) -> dict[str, Any]:
    """1..3 replicas, one per LAG_PER_REPLICA entries of the group's lag; the HPA scales up at once."""
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "worker", "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"name": "worker"},
            "pollingInterval": 1,
            "minReplicaCount": 1,
            "maxReplicaCount": MAX_REPLICAS,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleUp": {
                            "stabilizationWindowSeconds": 0,
                            "policies": [{"type": "Pods", "value": MAX_REPLICAS, "periodSeconds": 1}],
                        }
                    }
                }
            },
            "triggers": [
                {
                    "type": "redis-streams",
                    "metadata": {
                        "address": redis_address,
                        "stream": stream,
                        "consumerGroup": group,
                        "lagCount": str(LAG_PER_REPLICA),
                    },
                }
            ],
        },
    }


def external_metric(kubectl: Kubectl, namespace: str) -> float | None:
    """The ScaledObject's metric as the HPA reads it, through the aggregation layer."""
    status = kubectl.json("get", "scaledobject", "worker", "-n", namespace).get("status", {})
    names = status.get("externalMetricNames") or []
    if not names:
        return None
    selector = urllib.parse.quote("scaledobject.keda.sh/name=worker")
    path = f"{EXTERNAL_METRICS}/namespaces/{namespace}/{names[0]}?labelSelector={selector}"
    items = json.loads(kubectl("get", "--raw", path).stdout).get("items", [])
    if not items:
        return None
    value = str(items[0]["value"])
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


def deployment(kubectl: Kubectl, namespace: str) -> dict[str, Any]:
    result: dict[str, Any] = kubectl.json("get", "deployment", "worker", "-n", namespace)
    return result


def test_redis_stream_lag_scales_deployment_one_to_three_through_the_hpa(
    keda_metrics_adapter: KedaMetricsAdapter,
    keda_operator: KedaOperator,
    node: Node,
    kubectl: Kubectl,
    k8s_namespace: str,
    redis_server: RedisServer,
) -> None:
    ns, suffix = k8s_namespace, uuid.uuid4().hex[:8]
    stream, group = f"jobs-{suffix}", f"workers-{suffix}"
    procs = [keda_metrics_adapter.proc, keda_operator.proc, *node.group.procs]
    redis_server.command("XGROUP", "CREATE", stream, group, "0", "MKSTREAM")
    kubectl.apply(worker(ns, node.probe_image))
    kubectl.apply(scaled_object(ns, redis_server.address, stream, group))

    # No lag: the HPA KEDA made reads 0 through the adapter and keeps the one replica.
    wait_until(
        lambda: kubectl("get", "hpa", "keda-hpa-worker", "-n", ns, check=False).returncode == 0,
        "KEDA's HPA keda-hpa-worker",
        60,
        procs,
    )
    wait_until(lambda: external_metric(kubectl, ns) == 0, "lag 0 via external.metrics.k8s.io", 60, procs)
    wait_until(lambda: deployment(kubectl, ns)["status"].get("readyReplicas") == 1, "1 ready", 90, procs)
    assert deployment(kubectl, ns)["spec"]["replicas"] == 1

    lag = LAG_PER_REPLICA * MAX_REPLICAS
    started = time.monotonic()
    for i in range(lag):
        redis_server.command("XADD", stream, "*", "job", str(i))
    assert redis_server.command("XLEN", stream) == lag

    wait_until(lambda: deployment(kubectl, ns)["spec"]["replicas"] == MAX_REPLICAS, "scale 1 -> 3", 60, procs)
    scaled = time.monotonic() - started
    assert external_metric(kubectl, ns) == lag
    hpa = kubectl.json("get", "hpa", "keda-hpa-worker", "-n", ns)
    assert hpa["status"]["desiredReplicas"] == MAX_REPLICAS, hpa["status"]
    wait_until(
        lambda: deployment(kubectl, ns)["status"].get("readyReplicas") == MAX_REPLICAS,
        "3 pods ready",
        90,
        procs,
    )
    ready = time.monotonic() - started
    print(f"\nKEDA HPA: lag {lag} -> spec.replicas 3 in {scaled:.1f}s, 3 pods ready in {ready:.1f}s")
