"""What render makes is accepted by a real kube-apiserver (with Dapr's and KEDA's CRDs): every
object of every golden case passes a server-side dry run, and every pod template is admitted by
PodSecurity ``restricted``, enforced on Pods and warned about on workloads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from funcd_controller.render import render_all

from functions_framework.model import parse_function
from tests.e2e.stack_kube import Kubectl, crds_established
from tests.test_render import CASES, UID, pod_templates


@pytest.fixture(scope="module")
def restricted_namespace(kubectl: Kubectl, crds: dict[str, Path], k8s_namespace: str) -> str:
    kubectl.apply(crds["dapr"], server_side=True)
    kubectl.apply(crds["keda"], server_side=True)
    crds_established(
        kubectl, [n.split("/", 1)[1] for n in kubectl("get", "crd", "-o", "name").stdout.split()]
    )
    kubectl(
        "label",
        "namespace",
        k8s_namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    )
    for account in ("default", "custom"):  # no controller-manager makes "default"; "custom" is a case's
        kubectl.apply(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": account, "namespace": k8s_namespace},
            }
        )
    return k8s_namespace


@pytest.fixture(scope="module")
def k8s_namespace(kubectl: Kubectl) -> str:  # module-wide: one namespace for every case
    import uuid

    name = f"e2e-render-{uuid.uuid4().hex[:8]}"
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def rendered(case: str, namespace: str) -> list[dict[str, Any]]:
    data = yaml.safe_load(CASES[case].read_text())
    data["metadata"]["namespace"] = namespace
    data["metadata"]["uid"] = UID
    return render_all(parse_function(data))


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_object_passes_a_server_side_dry_run(
    kubectl: Kubectl, restricted_namespace: str, case: str
) -> None:
    objects = rendered(case, restricted_namespace)
    helper = case == "user-override"  # its own container "helper" has no security context: theirs
    proc = kubectl.apply(objects, "--dry-run=server", server_side=True)
    assert ("would violate PodSecurity" in proc.stderr) == helper, proc.stderr


@pytest.mark.parametrize("case", sorted(c for c in CASES if c != "user-override"))
def test_every_pod_is_admitted_as_restricted(kubectl: Kubectl, restricted_namespace: str, case: str) -> None:
    [template] = [t for o in rendered(case, restricted_namespace) for t in pod_templates(o)]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**template["metadata"], "name": f"render-{case}", "namespace": restricted_namespace},
        "spec": template["spec"],
    }
    kubectl.apply(pod, "--dry-run=server", server_side=True)


def test_a_pod_that_is_not_restricted_is_refused(kubectl: Kubectl, restricted_namespace: str) -> None:
    [template] = [t for o in rendered("user-override", restricted_namespace) for t in pod_templates(o)]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "render-user-override", "namespace": restricted_namespace},
        "spec": template["spec"],
    }
    proc = kubectl(
        "apply", "--server-side", "--dry-run=server", "-f", "-", input=yaml.safe_dump(pod), check=False
    )
    assert proc.returncode != 0 and 'violates PodSecurity "restricted' in proc.stderr, proc.stderr
