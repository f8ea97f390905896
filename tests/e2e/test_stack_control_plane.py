"""The controller-manager and scheduler (testbin builds) work against the test apiserver: a Deployment
gets a ReplicaSet and Pods (Pending: no node runs yet), scaling changes the Pods, and deleting the
Deployment leaves nothing behind (the garbage collector follows owner references)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.stack_procs import wait_until

pytestmark = pytest.mark.e2e


def _deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "funcd/none:test"}]},
            },
        },
    }


def _pods(kubectl: Any, ns: str, name: str) -> list[dict[str, Any]]:
    return kubectl.json("get", "pods", "-n", ns, "-l", f"app={name}")["items"]


def test_deployments_get_pods_and_garbage_is_collected(control_plane, kubectl, k8s_namespace):
    ns, name = k8s_namespace, "cp-smoke"
    kubectl.apply(_deployment(name, 2), "-n", ns)
    wait_until(
        lambda: len(_pods(kubectl, ns, name)) == 2, "2 pods of the Deployment", 30, control_plane.group.procs
    )
    pods = _pods(kubectl, ns, name)
    assert all(p["status"]["phase"] == "Pending" for p in pods)  # no node yet
    owners = {ref["kind"] for p in pods for ref in p["metadata"]["ownerReferences"]}
    assert owners == {"ReplicaSet"}

    kubectl("scale", "deployment", name, "-n", ns, "--replicas=3")
    wait_until(
        lambda: len(_pods(kubectl, ns, name)) == 3, "3 pods after scaling", 30, control_plane.group.procs
    )

    kubectl("delete", "deployment", name, "-n", ns, "--wait=false")
    wait_until(
        lambda: not kubectl.json("get", "replicasets", "-n", ns)["items"] and not _pods(kubectl, ns, name),
        "the garbage collector to remove the ReplicaSet and its Pods",
        60,
        control_plane.group.procs,
    )
