"""The controller on a real control plane (kube-apiserver, controller-manager, scheduler; no node yet).

It runs as `funcd controller` with the ServiceAccount token and ClusterRole from manifests/, not as an
admin. Functions applied with kubectl become their objects; updates patch them in place; deletion
leaves nothing behind; a spec the model refuses gets Ready=False with the model's path-exact message
while the controller keeps serving other Functions.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.stack_funcd_controller import _function, _get, _ready, _reconciles
from tests.e2e.stack_kube import Kubectl
from tests.e2e.stack_procs import Proc, wait_until

pytestmark = pytest.mark.e2e


def test_a_function_becomes_its_objects_is_updated_in_place_and_deleted_with_them(
    controller: Proc, kubectl: Kubectl, k8s_namespace: str
) -> None:
    ns, name = k8s_namespace, "hello"
    kubectl.apply(_function(name), "-n", ns)
    deployment = wait_until(lambda: _get(kubectl, "deployment", name, ns), "the Deployment", 30, [controller])
    service = wait_until(lambda: _get(kubectl, "service", name, ns), "the Service", 30, [controller])
    fn = _get(kubectl, "fn", name, ns)
    assert fn is not None
    for child in (deployment, service):
        (owner,) = child["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
            "Function",
            name,
            fn["metadata"]["uid"],
            True,
        )
    ready = wait_until(lambda: _ready(kubectl, name, ns), "the Ready condition", 30, [controller])
    assert (ready["status"], ready["reason"]) == ("False", "WorkloadUnavailable")  # no node: no pod runs
    table = kubectl("get", "fn", name, "-n", ns).stdout
    assert "WorkloadUnavailable" in table and "READY" in table

    uid = deployment["metadata"]["uid"]
    kubectl.apply(_function(name, image="funcd/hello:2", params={"GREETING": "hi"}), "-n", ns)

    def updated() -> dict[str, Any] | None:
        d = _get(kubectl, "deployment", name, ns)
        container = (d or {}).get("spec", {}).get("template", {}).get("spec", {}).get("containers", [{}])[0]
        return d if container.get("image") == "funcd/hello:2" else None

    after = wait_until(updated, "the new image in the Deployment", 30, [controller])
    assert after["metadata"]["uid"] == uid  # patched in place, not recreated
    env = {e["name"]: e.get("value") for e in after["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["GREETING"] == "hi"
    wait_until(lambda: _ready(kubectl, name, ns), "status for the new generation", 30, [controller])

    kubectl("delete", "fn", name, "-n", ns, "--wait=false")
    wait_until(
        lambda: _get(kubectl, "deployment", name, ns) is None and _get(kubectl, "service", name, ns) is None,
        "the garbage collector to remove the Function's objects",
        60,
        [controller],
    )


def test_a_spec_the_model_refuses_gets_its_message_and_others_still_reconcile(
    controller: Proc, kubectl: Kubectl, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    bad = _function("bad")
    bad["spec"]["serving"]["triggers"]["dapr"] = [{"name": "nowhere", "topic": "t"}]  # no type, no component
    kubectl.apply(bad, "-n", ns)
    kubectl.apply(_function("good"), "-n", ns)
    ready = wait_until(lambda: _ready(kubectl, "bad", ns), "the bad Function's condition", 30, [controller])
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "spec.serving.triggers.dapr[0]" in ready["message"], ready["message"]
    assert wait_until(
        lambda: _get(kubectl, "deployment", "good", ns), "the good Function's Deployment", 30, [controller]
    )
    assert _get(kubectl, "deployment", "bad", ns) is None


def test_steady_state_makes_no_writes(controller: Proc, kubectl: Kubectl, k8s_namespace: str) -> None:
    ns, name = k8s_namespace, "steady"
    kubectl.apply(_function(name), "-n", ns)
    wait_until(lambda: _ready(kubectl, name, ns), "the Ready condition", 30, [controller])
    wait_until(lambda: _get(kubectl, "service", name, ns), "the Service", 30, [controller])

    def versions() -> dict[str, str]:
        out = {}
        for kind in ("fn", "deployment", "service"):
            obj = _get(kubectl, kind, name, ns)
            assert obj is not None
            out[kind] = obj["metadata"]["resourceVersion"]
        return out

    before, count = versions(), _reconciles(controller)
    # Resyncs every 2 s and requeues while the workload is unavailable: wait for several passes.
    wait_until(lambda: _reconciles(controller) >= count + 6, "six more reconciles", 60, [controller])
    assert versions() == before
