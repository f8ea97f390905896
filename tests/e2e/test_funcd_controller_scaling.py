"""KEDA scales a Function's Deployment on the lag of its Redis stream: 0 → 1 → 0.

The controller renders the ScaledObject (redis-streams, lag-based, derived from the pubsub.redis input);
the real KEDA operator reads the real Redis. No node runs pods yet, so no Dapr sidecar consumes the
stream: the test creates the consumer group the ScaledObject names (as Dapr would), makes lag with XADD
and removes it by reading the entries with that group.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.stack_funcd_controller import _get
from tests.e2e.stack_kube import KedaOperator, Kubectl
from tests.e2e.stack_procs import Proc, wait_until
from tests.e2e.stack_redis import RedisServer

pytestmark = pytest.mark.e2e

NAME = "scaled"
COOLDOWN = 3


def _function(redis_host: str, topic: str) -> dict[str, Any]:
    return {
        "apiVersion": "funcd.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": NAME},
        "spec": {
            "version": "v1",
            "image": "funcd/scaled:1",
            "serving": {
                "triggers": {"dapr": [{"name": "jobs-pubsub", "topic": topic}]},
                "pubsub": {
                    "jobs-pubsub": {
                        "type": "pubsub.redis",
                        "version": "v1",
                        "metadata": [{"name": "redisHost", "value": redis_host}],
                    }
                },
                "scaleOptions": {
                    "minReplicas": 0,
                    "maxReplicas": 1,
                    "keda": {"scaledObject": {"pollingInterval": 1, "cooldownPeriod": COOLDOWN}},
                },
            },
        },
    }


def _replicas(kubectl: Kubectl, ns: str) -> int | None:
    deployment = _get(kubectl, "deployment", NAME, ns)
    return None if deployment is None else int(deployment["spec"].get("replicas", 1))


def _status_replicas(kubectl: Kubectl, ns: str) -> int | None:
    """What the controller reports (a pod exists, Pending with no node, once the Deployment has 1)."""
    fn = _get(kubectl, "fn", NAME, ns) or {}
    return (fn.get("status") or {}).get("replicas")


def _keda_ready(kubectl: Kubectl, ns: str) -> bool:
    so = _get(kubectl, "scaledobject", NAME, ns) or {}
    conditions = (so.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def test_keda_scales_from_zero_on_stream_lag_and_back_after_cooldown(
    controller: Proc,
    keda_operator: KedaOperator,
    dapr_crds: None,
    redis_server: RedisServer,
    kubectl: Kubectl,
    k8s_namespace: str,
) -> None:
    ns = k8s_namespace
    procs = [controller, keda_operator.proc, redis_server.proc]
    kubectl.apply(_function(redis_server.address, f"jobs-{ns}"), "-n", ns)
    so = wait_until(lambda: _get(kubectl, "scaledobject", NAME, ns), "the ScaledObject", 30, procs)
    (trigger,) = so["spec"]["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "redis-streams" and meta["address"] == redis_server.address, trigger
    assert meta["stream"] == f"jobs-{ns}" and meta["consumerGroup"] == f"{NAME}-{ns}", trigger
    assert "lagCount" in meta, f"expected a lag-based trigger (scale to zero), found {meta}"
    stream, group = meta["stream"], meta["consumerGroup"]
    redis_server.command("XGROUP", "CREATE", stream, group, "$", "MKSTREAM")

    wait_until(lambda: _keda_ready(kubectl, ns), "KEDA to report the ScaledObject Ready", 60, procs)
    wait_until(lambda: _replicas(kubectl, ns) == 0, "KEDA to scale the idle Deployment to 0", 60, procs)

    for i in range(3):
        redis_server.command("XADD", stream, "*", "n", str(i))
    wait_until(lambda: _replicas(kubectl, ns) == 1, "KEDA to scale to 1 on the stream's lag", 30, procs)
    wait_until(
        lambda: _status_replicas(kubectl, ns) == 1, "the Function's status.replicas to be 1", 30, procs
    )

    entries = redis_server.command("XREADGROUP", "GROUP", group, "test", "STREAMS", stream, ">")
    ids = [entry[0] for entry in entries[0][1]]
    assert len(ids) == 3, entries
    assert redis_server.command("XACK", stream, group, *ids) == 3
    wait_until(
        lambda: _replicas(kubectl, ns) == 0,
        f"KEDA to scale back to 0 after the {COOLDOWN}s cooldown with no lag",
        COOLDOWN + 30,
        procs,
    )
    wait_until(
        lambda: _status_replicas(kubectl, ns) == 0, "the Function's status.replicas to be 0", 30, procs
    )
