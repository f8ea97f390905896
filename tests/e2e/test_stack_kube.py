"""kube-apiserver + etcd (testbin builds) accept manifests and CRDs, and enforce RBAC and PodSecurity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack_kube import KubeAPIServer, Kubectl, KubectlError, crds_established


def test_server_and_client_versions(kubectl: Kubectl, kube_apiserver: KubeAPIServer) -> None:
    versions = kubectl.json("version")
    assert versions["serverVersion"]["gitVersion"] == f"v{kube_apiserver.version}"
    assert versions["clientVersion"]["gitVersion"] == f"v{kube_apiserver.version}"


def test_apply_configmap(kubectl: Kubectl, k8s_namespace: str) -> None:
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": k8s_namespace},
        "data": {"greeting": "hello"},
    }
    kubectl.apply(configmap)
    assert kubectl.json("get", "configmap", "settings", "-n", k8s_namespace)["data"] == {"greeting": "hello"}

    configmap["data"] = {"greeting": "bonjour"}
    kubectl.apply(configmap, server_side=True)
    assert kubectl.json("get", "configmap", "settings", "-n", k8s_namespace)["data"] == {
        "greeting": "bonjour"
    }


def _crd_names(kubectl: Kubectl, group_suffix: str) -> set[str]:
    return {
        item["metadata"]["name"]
        for item in kubectl.json("get", "crd")["items"]
        if item["metadata"]["name"].endswith(group_suffix)
    }


def test_apply_dapr_and_keda_crds(kubectl: Kubectl, crds: dict[str, Path], k8s_namespace: str) -> None:
    kubectl.apply(crds["dapr"])
    kubectl.apply(crds["keda"], server_side=True)  # scaledjobs is too big for client-side apply
    dapr_crds, keda_crds = _crd_names(kubectl, ".dapr.io"), _crd_names(kubectl, "keda.sh")
    assert {"components.dapr.io", "subscriptions.dapr.io", "configurations.dapr.io"} <= dapr_crds
    assert {"scaledobjects.keda.sh", "scaledjobs.keda.sh", "triggerauthentications.keda.sh"} <= keda_crds
    crds_established(kubectl, sorted(dapr_crds | keda_crds))

    kubectl.apply(
        {
            "apiVersion": "dapr.io/v1alpha1",
            "kind": "Component",
            "metadata": {"name": "orders", "namespace": k8s_namespace},
            "spec": {
                "type": "pubsub.redis",
                "version": "v1",
                "metadata": [{"name": "redisHost", "value": "127.0.0.1:6379"}],
            },
        }
    )
    component = kubectl.json("get", "components.dapr.io", "orders", "-n", k8s_namespace)
    assert component["spec"]["type"] == "pubsub.redis"


def test_rbac_denies_an_unprivileged_service_account(kubectl: Kubectl, k8s_namespace: str) -> None:
    subject = f"--as=system:serviceaccount:{k8s_namespace}:nobody"
    answer = kubectl("auth", "can-i", "list", "secrets", "-n", k8s_namespace, subject, check=False)
    assert answer.stdout.strip() == "no"
    assert kubectl("auth", "can-i", "list", "secrets", "-n", k8s_namespace).stdout.strip() == "yes"


def test_pod_security_admission_enforces_restricted(kubectl: Kubectl, k8s_namespace: str) -> None:
    kubectl("label", "namespace", k8s_namespace, "pod-security.kubernetes.io/enforce=restricted")
    # No controller-manager creates the default service account; the ServiceAccount admission needs it.
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "default", "namespace": k8s_namespace},
        }
    )

    def pod(name: str, security_context: dict[str, Any] | None = None) -> dict[str, Any]:
        container: dict[str, Any] = {"name": "c", "image": "example.invalid/none:1"}
        if security_context is not None:
            container["securityContext"] = security_context
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": k8s_namespace},
            "spec": {"containers": [container]},
        }

    with pytest.raises(KubectlError, match='violates PodSecurity "restricted'):
        kubectl.apply(pod("unconfined"))
    kubectl.apply(
        pod(
            "restricted",
            {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"},
            },
        )
    )
    assert kubectl.json("get", "pod", "restricted", "-n", k8s_namespace)["metadata"]["name"] == "restricted"
