"""The funcd controller as the e2e tests run it, and helpers to read what it made.

Fixtures (registered in conftest.py):

    funcd_crd   module    the Function CRD applied and Established
    dapr_crds   module    Dapr's CRDs (Component, ...) applied and Established
    controller  module    `funcd controller` as the ServiceAccount of manifests/ (Proc, .metrics_url)
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.stack_funcd_pods import DAPRD_IMAGE
from tests.e2e.stack_kube import KubeAPIServer, Kubectl, crds_established
from tests.e2e.stack_procs import HOST, Proc, free_port, http_status, start, wait_until
from tests.support import FUNCD, ROOT

MANIFESTS = ROOT / "manifests"


def install_funcd_crd(kubectl: Kubectl) -> None:
    """Apply the Function CRD; bounded wait until it is Established and discovery lists ``fn``."""
    kubectl("apply", "-f", str(MANIFESTS / "crds"))

    def established() -> bool:
        crd = kubectl.json("get", "crd", "functions.funcd.dev")
        conditions = (crd.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    wait_until(established, "the Function CRD to be Established", 60)
    wait_until(lambda: kubectl("get", "fn", "-A", check=False).returncode == 0, "discovery to list fn", 60)


@pytest.fixture(scope="module")
def funcd_crd(kubectl: Kubectl) -> None:
    install_funcd_crd(kubectl)


def service_account_kubeconfig(
    kubectl: Kubectl, server: KubeAPIServer, workdir: Path, duration: str = "1h"
) -> Path:
    """A kubeconfig with a token of the controller's ServiceAccount (RBAC from manifests/)."""
    kubectl("apply", "-f", str(MANIFESTS / "controller" / "namespace.yaml"))
    kubectl("apply", "-f", str(MANIFESTS / "rbac"))
    token = kubectl(
        "create", "token", "funcd-controller", "-n", "funcd-system", f"--duration={duration}"
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


def start_funcd_controller(
    kubectl: Kubectl,
    server: KubeAPIServer,
    workdir: Path,
    *flags: str,
    funcd: Sequence[str] = FUNCD,
    token_duration: str = "1h",
) -> Proc:
    """``funcd controller`` as the ServiceAccount of manifests/, with ``flags`` added; waits for
    /readyz. The Proc gets ``.metrics_url`` and ``.health_port``."""
    workdir.mkdir(parents=True, exist_ok=True)
    kubeconfig = service_account_kubeconfig(kubectl, server, workdir, token_duration)
    port = free_port()
    argv = [*funcd, "controller", "--kubeconfig", str(kubeconfig)]
    proc = start(
        "funcd-controller",
        [*argv, "--health-host", HOST, "--health-port", str(port), *flags],
        workdir / "logs",
    )
    try:
        wait_until(
            lambda: http_status(f"http://{HOST}:{port}/readyz") == 200, "controller /readyz", 60, [proc]
        )
    except BaseException:
        proc.stop()
        raise
    proc.metrics_url = f"http://{HOST}:{port}/metrics"  # type: ignore[attr-defined]
    proc.health_port = port  # type: ignore[attr-defined]
    return proc


@pytest.fixture(scope="module")
def controller(
    funcd_crd: None,
    control_plane: Any,
    kube_apiserver: KubeAPIServer,
    kubectl: Kubectl,
    tmp_path_factory: Any,
) -> Iterator[Proc]:
    proc = start_funcd_controller(
        kubectl,
        kube_apiserver,
        tmp_path_factory.mktemp("controller"),
        "--resync",
        "2",
        "--daprd-image",
        DAPRD_IMAGE,  # the slim daprd imported into the e2e node (stack_funcd_pods)
    )
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


def install_dapr_crds(kubectl: Kubectl, crds_dir: Path) -> None:
    """Apply Dapr's CRDs from ``crds_dir``; bounded wait until Established and listed by discovery."""
    kubectl.apply(crds_dir, server_side=True)
    names = [yaml.safe_load(p.read_text())["metadata"]["name"] for p in sorted(crds_dir.glob("*.yaml"))]
    crds_established(kubectl, names)
    wait_until(
        lambda: kubectl("get", "components.dapr.io", "-A", check=False).returncode == 0,
        "discovery to list Dapr Components",
        60,
    )


@pytest.fixture(scope="module")
def dapr_crds(kubectl: Kubectl, crds: dict[str, Path]) -> None:
    install_dapr_crds(kubectl, crds["dapr"])
