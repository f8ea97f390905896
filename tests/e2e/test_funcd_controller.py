"""The controller on a real control plane (kube-apiserver, controller-manager, scheduler; no node yet).

It runs as `funcd controller` with the ServiceAccount token and ClusterRole from manifests/, not as an
admin. Functions applied with kubectl become their objects; updates patch them in place; deletion
leaves nothing behind; a spec the model refuses gets Ready=False with the model's path-exact message
while the controller keeps serving other Functions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack_kube import KubeAPIServer, Kubectl
from tests.e2e.stack_procs import HOST, Proc, free_port, http_status, start, wait_until
from tests.support import FUNCD, ROOT

pytestmark = pytest.mark.e2e

MANIFESTS = ROOT / "manifests"


@pytest.fixture(scope="module")
def funcd_crd(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", str(MANIFESTS / "crds"))

    def established() -> bool:
        crd = kubectl.json("get", "crd", "functions.funcd.dev")
        conditions = (crd.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    wait_until(established, "the Function CRD to be Established", 60)
    wait_until(lambda: kubectl("get", "fn", "-A", check=False).returncode == 0, "discovery to list fn", 60)


def _service_account_kubeconfig(kubectl: Kubectl, server: KubeAPIServer, workdir: Path) -> Path:
    """A kubeconfig with a token of the controller's ServiceAccount (RBAC from manifests/)."""
    kubectl("apply", "-f", str(MANIFESTS / "controller" / "namespace.yaml"))
    kubectl("apply", "-f", str(MANIFESTS / "rbac"))
    token = kubectl(
        "create", "token", "funcd-controller", "-n", "funcd-system", "--duration=1h"
    ).stdout.strip()
    path = workdir / "controller-kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {"server": server.url, "certificate-authority": str(server.ca_file)},
                    }
                ],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def controller(
    funcd_crd: None,
    control_plane: Any,
    kube_apiserver: KubeAPIServer,
    kubectl: Kubectl,
    tmp_path_factory: Any,
) -> Iterator[Proc]:
    workdir = tmp_path_factory.mktemp("controller")
    kubeconfig = _service_account_kubeconfig(kubectl, kube_apiserver, workdir)
    port = free_port()
    proc = start(
        "funcd-controller",
        [
            *FUNCD,
            "controller",
            "--kubeconfig",
            str(kubeconfig),
            "--health-host",
            HOST,
            "--health-port",
            str(port),
            "--resync",
            "2",
        ],
        workdir / "logs",
    )
    wait_until(lambda: http_status(f"http://{HOST}:{port}/readyz") == 200, "controller /readyz", 60, [proc])
    proc.metrics_url = f"http://{HOST}:{port}/metrics"  # type: ignore[attr-defined]
    yield proc
    proc.stop()


def _reconciles(controller: Proc) -> float:
    """funcd_controller_reconciles_total{result="success"} from the controller's /metrics."""
    import urllib.request

    with urllib.request.urlopen(controller.metrics_url, timeout=5) as resp:  # type: ignore[attr-defined]
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith('funcd_controller_reconciles_total{result="success"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _function(
    name: str, image: str = "funcd/hello:1", params: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "funcd.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": name},
        "spec": {
            "version": "v1",
            "image": image,
            "serving": {"triggers": {"http": {"port": 8080}}, "params": params or {}},
        },
    }


def _get(kubectl: Kubectl, kind: str, name: str, ns: str) -> dict[str, Any] | None:
    proc = kubectl("get", kind, name, "-n", ns, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def _ready(kubectl: Kubectl, name: str, ns: str) -> dict[str, Any] | None:
    fn = _get(kubectl, "fn", name, ns) or {}
    status = fn.get("status") or {}
    if status.get("observedGeneration") != fn.get("metadata", {}).get("generation"):
        return None
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)


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
