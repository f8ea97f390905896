"""Updates in place on a real control plane, with KEDA's and Dapr's CRDs installed.

Changing minReplicas, an input and a param patches the same objects (same UIDs) and the status follows
the new generation; removing scaleOptions prunes the ScaledObject, and removing an output with its inline
component prunes that Dapr Component, while everything else keeps its UID.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.stack_funcd_controller import _get, _ready
from tests.e2e.stack_kube import KedaOperator, Kubectl
from tests.e2e.stack_procs import Proc, wait_until

pytestmark = pytest.mark.e2e

NAME = "upd"


def _pubsub(host: str = "127.0.0.1:1") -> dict[str, Any]:
    # A loopback address nothing listens on: KEDA would resolve a host name such as "redis" through
    # DNS, and nothing here may send a DNS query off the machine.
    return {"type": "pubsub.redis", "version": "v1", "metadata": [{"name": "redisHost", "value": host}]}


def _function(min_replicas: int | None, topic: str, param: str, output: bool) -> dict[str, Any]:
    serving: dict[str, Any] = {
        "triggers": {"dapr": [{"name": "orders-pubsub", "topic": topic}]},
        "pubsub": {"orders-pubsub": _pubsub()},
        "params": {"MODE": param},
    }
    if output:
        serving["outputs"] = [{"dapr": {"name": "events-pubsub", "topic": "events", "outputName": "events"}}]
        serving["pubsub"]["events-pubsub"] = _pubsub()
    if min_replicas is not None:
        serving["scaleOptions"] = {
            "minReplicas": min_replicas,
            "maxReplicas": 3,
            "keda": {"scaledObject": {"pollingInterval": 30, "cooldownPeriod": 60}},
        }
    return {
        "apiVersion": "funcd.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": NAME},
        "spec": {"version": "v1", "image": "funcd/upd:1", "serving": serving},
    }


def _uid(kubectl: Kubectl, kind: str, name: str, ns: str) -> str:
    obj = _get(kubectl, kind, name, ns)
    assert obj is not None, f"{kind}/{name} in {ns}: expected to exist, found nothing"
    return str(obj["metadata"]["uid"])


def _env(deployment: dict[str, Any]) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def test_changes_patch_in_place_and_removals_prune(
    controller: Proc, keda_operator: KedaOperator, dapr_crds: None, kubectl: Kubectl, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    procs = [controller, keda_operator.proc]
    orders, events = f"{NAME}-orders-pubsub", f"{NAME}-events-pubsub"
    kubectl.apply(_function(1, "orders", "one", output=True), "-n", ns)
    for kind, name in (
        ("deployment", NAME),
        ("scaledobject", NAME),
        ("components.dapr.io", orders),
        ("components.dapr.io", events),
    ):
        wait_until(lambda k=kind, n=name: _get(kubectl, k, n, ns), f"{kind}/{name}", 30, procs)
    first = wait_until(lambda: _ready(kubectl, NAME, ns), "status for generation 1", 30, procs)
    assert first["observedGeneration"] == 1
    uids = {
        kind: _uid(kubectl, kind, name, ns)
        for kind, name in (("deployment", NAME), ("scaledobject", NAME), ("components.dapr.io", orders))
    }
    so = _get(kubectl, "scaledobject", NAME, ns)
    assert so is not None and so["spec"]["minReplicaCount"] == 1
    first_deployment = _get(kubectl, "deployment", NAME, ns)
    assert first_deployment is not None
    deployment_generation = first_deployment["metadata"]["generation"]
    assert so["spec"]["triggers"][0]["metadata"]["stream"] == "orders"

    # minReplicas, the input's topic and a param change: the same objects are patched.
    kubectl.apply(_function(2, "invoices", "two", output=True), "-n", ns)

    def patched() -> bool:
        so = _get(kubectl, "scaledobject", NAME, ns) or {"spec": {}}
        deployment = _get(kubectl, "deployment", NAME, ns)
        return (
            so["spec"].get("minReplicaCount") == 2
            and so["spec"]["triggers"][0]["metadata"]["stream"] == "invoices"
            and deployment is not None
            and _env(deployment).get("MODE") == "two"
        )

    wait_until(patched, "the ScaledObject and Deployment to carry the new spec", 30, procs)
    deployment = _get(kubectl, "deployment", NAME, ns)
    assert deployment is not None
    assert deployment["metadata"]["generation"] > deployment_generation  # patched: a new generation
    context = json.loads(_env(deployment)["FUNC_CONTEXT_V1BETA2"])
    assert "invoices" in json.dumps(context), context  # the runtime subscribes to the new topic
    for kind, uid in uids.items():
        name = orders if kind == "components.dapr.io" else NAME
        assert _uid(kubectl, kind, name, ns) == uid, f"{kind}/{name} was recreated, not patched"
    second = wait_until(lambda: _ready(kubectl, NAME, ns), "status for generation 2", 30, procs)
    fn = _get(kubectl, "fn", NAME, ns)
    assert fn is not None and fn["metadata"]["generation"] == 2
    assert second["observedGeneration"] == 2 and fn["status"]["observedGeneration"] == 2

    # No scaleOptions, no output: the ScaledObject and the output's Component are pruned.
    kubectl.apply(_function(None, "invoices", "two", output=False), "-n", ns)
    wait_until(
        lambda: (
            _get(kubectl, "scaledobject", NAME, ns) is None
            and _get(kubectl, "components.dapr.io", events, ns) is None
        ),
        "the ScaledObject and the events Component to be pruned",
        30,
        procs,
    )
    assert _uid(kubectl, "deployment", NAME, ns) == uids["deployment"]
    assert _uid(kubectl, "components.dapr.io", orders, ns) == uids["components.dapr.io"]
    wait_until(lambda: _ready(kubectl, NAME, ns), "status for generation 3", 30, procs)
    fn = _get(kubectl, "fn", NAME, ns)
    assert fn is not None
    owned = {(o["kind"], o["name"]) for o in fn["status"]["objects"]}
    assert ("ScaledObject", NAME) not in owned and ("Component", events) not in owned, owned
    assert ("Component", orders) in owned and ("Deployment", NAME) in owned, owned


def test_a_workload_that_misses_its_timeout_says_so(
    controller: Proc, kubectl: Kubectl, k8s_namespace: str
) -> None:
    """``serving.timeout`` becomes the Deployment's progress deadline; the deployment controller marks
    it exceeded (no pod becomes available: no node, or an image that is not there) and Ready says so."""
    ns = k8s_namespace
    fn = _function(None, "orders", "one", output=False)
    fn["metadata"]["name"] = "late"
    fn["spec"]["image"] = "funcd/not-there:1"
    fn["spec"]["serving"]["timeout"] = "2s"
    kubectl.apply(fn, "-n", ns)
    deployment = wait_until(
        lambda: _get(kubectl, "deployment", "late", ns), "deployment/late", 30, [controller]
    )
    assert deployment["spec"]["progressDeadlineSeconds"] == 2

    def stalled() -> dict[str, Any] | None:
        ready = _ready(kubectl, "late", ns)
        return ready if ready and ready["reason"] == "ProgressDeadlineExceeded" else None

    ready = wait_until(stalled, "Ready=False with reason ProgressDeadlineExceeded", 60, [controller])
    assert ready["status"] == "False"
    assert "within the timeout (2s)" in ready["message"], ready
