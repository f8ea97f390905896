"""The Function CRD and the manifests in manifests/, against a real kube-apiserver.

The CRD installs with a plain client-side ``kubectl apply`` (so it fits the last-applied annotation),
its schema accepts every Function fixture and refuses type errors and what its CEL rules forbid with
messages that name the field, and ``kubectl apply -k manifests`` is accepted.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.stack_kube import Kubectl, KubectlError, crds_established
from tests.e2e.stack_procs import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = REPO_ROOT / "manifests"
CRD_FILE = MANIFESTS / "crds" / "functions.funcd.dev.yaml"
CRD_NAME = "functions.funcd.dev"


def _function_files() -> list[Path]:
    """Every Function resource among the test fixtures and the samples."""
    candidates = sorted((REPO_ROOT / "tests" / "fixtures").glob("*.yaml"))
    candidates += sorted((REPO_ROOT / "samples").glob("*/function.yaml"))
    found = []
    for path in candidates:
        doc = yaml.safe_load(path.read_text())
        if isinstance(doc, dict) and doc.get("kind") == "Function" and "apiVersion" in doc:
            found.append(path)
    return found


FUNCTION_FILES = _function_files()


@pytest.fixture(scope="module")
def function_crd(kubectl: Kubectl) -> str:
    """The Function CRD, applied client-side and Established."""
    kubectl("apply", "-f", str(CRD_FILE))
    crds_established(kubectl, [CRD_NAME])

    def discovered() -> bool:  # Established comes a moment before discovery lists the short name
        listed = kubectl("api-resources", "--api-group=funcd.dev", "--no-headers", check=False).stdout
        return any(line.split()[:2] == ["functions", "fn"] for line in listed.splitlines())

    def published() -> bool:  # and a moment before the OpenAPI document has its schema
        return kubectl("explain", "fn.spec", check=False).returncode == 0

    wait_until(discovered, "discovery to list functions.funcd.dev with short name fn", timeout=30)
    wait_until(published, "the OpenAPI document to publish the Function schema", timeout=30)
    return CRD_NAME


def _function(path: Path, namespace: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    doc["apiVersion"] = "funcd.dev/v1alpha1"
    doc["metadata"]["namespace"] = namespace
    return doc


def _full(namespace: str) -> dict[str, Any]:
    return _function(REPO_ROOT / "tests" / "fixtures" / "function-full.yaml", namespace)


def _refused(kubectl: Kubectl, fn: dict[str, Any]) -> str:
    with pytest.raises(KubectlError) as refused:
        kubectl.apply(fn, "--dry-run=server")
    return refused.value.stderr


def test_crd_is_established_with_names_and_client_side_annotation(
    kubectl: Kubectl, function_crd: str
) -> None:
    crd = kubectl.json("get", "crd", function_crd)
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["singular"], names["shortNames"]) == (
        "Function",
        "functions",
        "function",
        ["fn"],
    )
    assert [(v["name"], v["served"], v["storage"]) for v in crd["spec"]["versions"]] == [
        ("v1alpha1", True, True)
    ]
    # Client-side apply stored the whole CRD in the annotation: it fits the 256 KiB limit.
    assert "kubectl.kubernetes.io/last-applied-configuration" in crd["metadata"]["annotations"]


def test_explain_scale_options_lists_its_fields(kubectl: Kubectl, function_crd: str) -> None:
    out = kubectl("explain", "fn.spec.serving.scaleOptions").stdout
    for field in ("minReplicas", "maxReplicas", "keda", "knative"):
        assert field in out, out
    assert "KEDA" in out and "<integer>" in out, out
    assert "0 lets KEDA scale to zero" in out, out  # the descriptions come along
    keda = kubectl("explain", "fn.spec.serving.scaleOptions.keda").stdout
    for field in ("scaledObject", "scaledJob", "triggers"):
        assert field in keda, keda


@pytest.mark.parametrize("path", FUNCTION_FILES, ids=lambda p: p.stem)
def test_fixture_functions_are_accepted(
    kubectl: Kubectl, function_crd: str, k8s_namespace: str, path: Path
) -> None:
    fn = _function(path, k8s_namespace)
    out = kubectl.apply(fn, "--dry-run=server").stdout
    assert "(server dry run)" in out, out


def test_openfunction_subscriber_is_stored_unchanged(
    kubectl: Kubectl, function_crd: str, k8s_namespace: str
) -> None:
    fn = _function(REPO_ROOT / "tests" / "fixtures" / "openfunction-subscriber.yaml", k8s_namespace)
    kubectl.apply(fn)
    stored = kubectl.json("get", "fn", fn["metadata"]["name"], "-n", k8s_namespace)
    assert stored["spec"] == fn["spec"]  # nothing pruned


def test_full_function_is_stored_unpruned(kubectl: Kubectl, function_crd: str, k8s_namespace: str) -> None:
    fn = _full(k8s_namespace)
    kubectl.apply(fn)
    stored = kubectl.json("get", "fn", "full", "-n", k8s_namespace)
    assert stored["spec"] == fn["spec"]


def _refused_by_server(kubectl: Kubectl, fn: dict[str, Any]) -> str:
    """Refused with kubectl's own validation off: the API server's message."""
    with pytest.raises(KubectlError) as refused:
        kubectl.apply(fn, "--dry-run=server", "--validate=false")
    return refused.value.stderr


def test_wrong_type_is_refused_naming_the_field(
    kubectl: Kubectl, function_crd: str, k8s_namespace: str
) -> None:
    fn = _full(k8s_namespace)
    fn["spec"]["serving"]["scaleOptions"]["minReplicas"] = "two"
    err = _refused_by_server(kubectl, fn)
    assert "spec.serving.scaleOptions.minReplicas" in err and "must be of type integer" in err, err
    # kubectl checks the published schema first, with the same field path.
    err = _refused(kubectl, fn)
    assert "spec.serving.scaleOptions.minReplicas" in err and 'expected "integer"' in err, err


def test_unknown_enum_value_is_refused(kubectl: Kubectl, function_crd: str, k8s_namespace: str) -> None:
    fn = _full(k8s_namespace)
    fn["spec"]["serving"]["dapr"]["mode"] = "sidecar"
    err = _refused(kubectl, fn)
    assert "spec.serving.dapr.mode" in err and '"annotations"' in err and '"container"' in err, err


def test_unknown_field_is_refused(kubectl: Kubectl, function_crd: str, k8s_namespace: str) -> None:
    fn = _full(k8s_namespace)
    fn["spec"]["serving"]["scaleOptions"]["minReplica"] = 1
    err = _refused(kubectl, fn)
    assert 'unknown field "minReplica"' in err and "Function.spec.serving.scaleOptions" in err, err


def test_min_above_max_replicas_is_refused_by_the_cel_rule(
    kubectl: Kubectl, function_crd: str, k8s_namespace: str
) -> None:
    fn = _full(k8s_namespace)
    fn["spec"]["serving"]["scaleOptions"].update(minReplicas=6, maxReplicas=5)
    err = _refused(kubectl, fn)
    assert "spec.serving.scaleOptions.minReplicas" in err, err
    assert "minReplicas must be at most maxReplicas" in err, err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"workloadType": "Deployment", "scaleOptions": {"keda": {"scaledJob": {"pollingInterval": 5}}}},
            "scaledJob needs workloadType 'Job'",
        ),
        (
            {"workloadType": "Job", "scaleOptions": {"keda": {"scaledObject": {"pollingInterval": 5}}}},
            "scaledObject needs workloadType 'Deployment' or 'StatefulSet'",
        ),
        (
            {"workloadType": "Job", "scaleOptions": {"keda": {"scaledObject": {}, "scaledJob": {}}}},
            "at most one of httpScaledObject, scaledObject and scaledJob",
        ),
        ({"bindings": {"orders": {"type": "bindings.kafka"}}}, "used in both pubsub and bindings"),
        ({"pubsub": {"orders": {"type": "bindings.kafka"}}}, "spec.serving.pubsub.orders.type"),
        ({"triggers": {"http": {"port": 70000}}}, "must be a port number 0-65535"),
        ({"timeout": "5 minutes"}, "spec.serving.timeout"),
    ],
    ids=[
        "scaledJob-on-Deployment",
        "scaledObject-on-Job",
        "two-scalers",
        "name-clash",
        "pubsub-type",
        "port",
        "timeout",
    ],
)
def test_rules_refuse_what_the_model_refuses(
    kubectl: Kubectl, function_crd: str, k8s_namespace: str, change: dict[str, Any], message: str
) -> None:
    fn = _full(k8s_namespace)
    serving = copy.deepcopy(fn["spec"]["serving"])
    serving["scaleOptions"].pop("keda")
    serving.update(change)
    fn["spec"]["serving"] = serving
    err = _refused(kubectl, fn)
    assert message in err, err


def test_get_fn_shows_the_printer_columns(kubectl: Kubectl, function_crd: str, k8s_namespace: str) -> None:
    kubectl.apply(_full(k8s_namespace))
    lines = kubectl("get", "fn", "-n", k8s_namespace).stdout.splitlines()
    assert lines[0].split() == ["NAME", "READY", "REASON", "TRIGGERS", "REPLICAS", "ADDRESS", "AGE"], lines
    assert lines[1].split()[0] == "full", lines


def test_kustomization_is_accepted(kubectl: Kubectl, function_crd: str) -> None:
    out = kubectl("apply", "-k", str(MANIFESTS)).stdout
    for applied in (
        "customresourcedefinition.apiextensions.k8s.io/functions.funcd.dev",
        "namespace/funcd-system",
        "serviceaccount/funcd-controller",
        "clusterrole.rbac.authorization.k8s.io/funcd-controller",
        "clusterrolebinding.rbac.authorization.k8s.io/funcd-controller",
        "deployment.apps/funcd-controller",
    ):
        assert applied in out, out
    deployment = kubectl.json("get", "deployment", "funcd-controller", "-n", "funcd-system")
    # The controller's pod passes the restricted Pod Security Standard (its namespace enforces it).
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "controller-check", "namespace": "funcd-system"},
        "spec": deployment["spec"]["template"]["spec"],
    }
    kubectl.apply(pod, "--dry-run=server")


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("patch", "functions.funcd.dev --subresource=status", "yes"),
        ("watch", "functions.funcd.dev", "yes"),
        ("patch", "deployments.apps", "yes"),
        ("delete", "jobs.batch", "yes"),
        ("create", "services", "yes"),
        ("create", "leases.coordination.k8s.io", "yes"),
        ("create", "events", "yes"),
        ("update", "functions.funcd.dev", "no"),
        ("delete", "functions.funcd.dev", "no"),
        ("list", "pods", "no"),
        ("list", "configmaps", "no"),
        ("create", "clusterroles.rbac.authorization.k8s.io", "no"),
        ("delete", "namespaces", "no"),
    ],
)
def test_cluster_role_grants_only_what_the_controller_uses(
    kubectl: Kubectl, function_crd: str, verb: str, resource: str, allowed: str
) -> None:
    kubectl("apply", "-k", str(MANIFESTS))
    subject = "--as=system:serviceaccount:funcd-system:funcd-controller"
    answer = kubectl("auth", "can-i", verb, *resource.split(), "-A", subject, check=False)
    assert answer.stdout.strip() == allowed, answer


def test_string_maps_take_strings_only(kubectl: Kubectl, function_crd: str, k8s_namespace: str) -> None:
    fn = _full(k8s_namespace)
    fn["spec"]["serving"]["params"]["PORT"] = 8080  # the model would read "8080"; the schema is strict
    err = _refused_by_server(kubectl, fn)
    assert "spec.serving.params.PORT" in err and "must be of type string" in err, err


def test_status_fills_the_printer_columns(kubectl: Kubectl, function_crd: str, k8s_namespace: str) -> None:
    fn = _full(k8s_namespace)
    kubectl.apply(fn)
    status = {
        "observedGeneration": 1,
        "replicas": 0,
        "address": f"http://full.{k8s_namespace}.svc.cluster.local:8080",
        "triggers": "http,pubsub:orders,bindings:ticker",
        "objects": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "full"}],
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "WorkloadUnavailable",
                "message": "no pod is ready",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 1,
            }
        ],
    }
    patch = json.dumps({"status": status})
    name = ("fn", "full", "-n", k8s_namespace)
    kubectl("patch", *name, "--subresource=status", "--type=merge", "-p", patch)
    assert kubectl.json("get", *name)["status"] == status  # nothing pruned
    lines = kubectl("get", *name).stdout.splitlines()
    assert lines[1].split()[:6] == [
        "full",
        "False",
        "WorkloadUnavailable",
        status["triggers"],
        "0",
        status["address"],
    ]
    # The status subresource ignores spec changes, and the main resource ignores status changes.
    kubectl("patch", *name, "--type=merge", "-p", json.dumps({"status": {"replicas": 3}}))
    assert kubectl.json("get", *name)["status"]["replicas"] == 0
    bad = {"status": {"conditions": [{"type": "Ready", "status": "Maybe"}]}}
    with pytest.raises(KubectlError) as refused:
        kubectl("patch", *name, "--subresource=status", "--type=merge", "-p", json.dumps(bad))
    err = refused.value.stderr
    assert "status.conditions[0].status" in err and "status.conditions[0].reason" in err, err
