"""The KEDA operator (testbin build) scales a Deployment 0 -> 1 -> 0 on a Redis list's length.

No kubelet runs: KEDA writes the Deployment's scale subresource, which is what we watch.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.e2e.stack_kube import KedaOperator, Kubectl
from tests.e2e.stack_procs import wait_until
from tests.e2e.stack_redis import RedisServer


def _replicas(kubectl: Kubectl, namespace: str) -> int:
    return int(kubectl.json("get", "deployment", "worker", "-n", namespace)["spec"].get("replicas", 1))


def _condition(kubectl: Kubectl, namespace: str, kind: str) -> dict[str, Any] | None:
    status = kubectl.json("get", "scaledobject", "worker", "-n", namespace).get("status", {})
    return next((c for c in status.get("conditions", []) if c.get("type") == kind), None)


def test_redis_list_scales_deployment_from_zero_and_back(
    keda_operator: KedaOperator, kubectl: Kubectl, k8s_namespace: str, redis_server: RedisServer
) -> None:
    ns, list_name = k8s_namespace, f"jobs-{uuid.uuid4().hex[:8]}"
    kubectl.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "worker", "namespace": ns},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "worker"}},
                "template": {
                    "metadata": {"labels": {"app": "worker"}},
                    "spec": {"containers": [{"name": "worker", "image": "example.invalid/worker:1"}]},
                },
            },
        }
    )
    kubectl.apply(
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": "worker", "namespace": ns},
            "spec": {
                "scaleTargetRef": {"name": "worker"},
                "pollingInterval": 1,
                "cooldownPeriod": 2,
                "minReplicaCount": 0,
                "maxReplicaCount": 3,
                "triggers": [
                    {
                        "type": "redis",
                        "metadata": {
                            "address": redis_server.address,
                            "listName": list_name,
                            "listLength": "5",
                            "activationListLength": "3",
                        },
                    }
                ],
            },
        }
    )

    # Below the activation threshold: KEDA has looked (Active=False) and left the Deployment at zero.
    redis_server.command("RPUSH", list_name, "a", "b")
    wait_until(
        lambda: (_condition(kubectl, ns, "Ready") or {}).get("status") == "True",
        "ScaledObject Ready",
        60,
        [keda_operator.proc],
    )
    wait_until(
        lambda: (_condition(kubectl, ns, "Active") or {}).get("status") == "False",
        "ScaledObject evaluated as inactive",
        60,
        [keda_operator.proc],
    )
    assert _replicas(kubectl, ns) == 0

    # Past the threshold: scaled from zero to one.
    redis_server.command("RPUSH", list_name, "c", "d", "e", "f")
    wait_until(lambda: _replicas(kubectl, ns) == 1, "scale 0 -> 1", 60, [keda_operator.proc])
    assert (_condition(kubectl, ns, "Active") or {}).get("status") == "True"

    # Drained: back to zero after the cooldown.
    redis_server.command("DEL", list_name)
    wait_until(lambda: _replicas(kubectl, ns) == 0, "scale 1 -> 0", 90, [keda_operator.proc])
