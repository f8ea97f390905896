"""`funcd deploy` against a real control plane with the controller running (no node yet).

Ready=True cannot happen without a node, so the success path is part 2's; here: the timeout path
(exit 1 with the last reason, after progress lines) and the invalid path (exit 2, nothing applied).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.e2e.stack_funcd_controller import _function, _get
from tests.e2e.stack_kube import KubeAPIServer, Kubectl
from tests.e2e.stack_procs import Proc
from tests.support import ROOT, run_cli

pytestmark = pytest.mark.e2e


def test_deploy_applies_shows_progress_and_times_out_with_the_reason(
    controller: Proc, kube_apiserver: KubeAPIServer, kubectl: Kubectl, k8s_namespace: str
) -> None:
    ns, sample = k8s_namespace, ROOT / "samples" / "hello-http" / "function.yaml"
    result = run_cli(
        "deploy", str(sample), "--kubeconfig", str(kube_apiserver.kubeconfig),
        "--namespace", ns, "--timeout", "6", timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert f"applied Function {ns}/hello-http (generation 1)" in result.stdout, result.stdout
    assert "Ready=False WorkloadUnavailable" in result.stdout, result.stdout  # progress while waiting
    assert "not Ready after 6s: Ready=False WorkloadUnavailable" in result.stderr, result.stderr
    fn = kubectl.json("get", "fn", "hello-http", "-n", ns, "--show-managed-fields")
    managers = {m["manager"] for m in fn["metadata"]["managedFields"]}
    assert "funcd-cli" in managers, managers
    assert _get(kubectl, "deployment", "hello-http", ns) is not None  # the controller reconciled it


def test_deploy_follows_the_new_generation(
    controller: Proc, kube_apiserver: KubeAPIServer, kubectl: Kubectl, k8s_namespace: str, tmp_path: Path
) -> None:
    ns, path = k8s_namespace, tmp_path / "function.yaml"
    args = ["--kubeconfig", str(kube_apiserver.kubeconfig), "--namespace", ns, "--timeout", "4"]
    path.write_text(yaml.safe_dump(_function("gen")))
    assert run_cli("deploy", str(path), *args, timeout=60).returncode == 1
    path.write_text(yaml.safe_dump(_function("gen", image="funcd/hello:2")))
    result = run_cli("deploy", str(path), *args, timeout=60)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert f"applied Function {ns}/gen (generation 2)" in result.stdout, result.stdout
    assert "Ready=False WorkloadUnavailable" in result.stdout, result.stdout  # status of generation 2
    fn = _get(kubectl, "fn", "gen", ns)
    assert fn is not None and fn["status"]["observedGeneration"] == 2


def test_deploy_refuses_an_invalid_function_and_applies_nothing(
    controller: Proc, kube_apiserver: KubeAPIServer, kubectl: Kubectl, k8s_namespace: str, tmp_path: Path
) -> None:
    ns, path = k8s_namespace, tmp_path / "function.yaml"
    bad = _function("bad")
    bad["spec"]["serving"]["triggers"]["dapr"] = [{"name": "nowhere", "topic": "t"}]
    path.write_text(yaml.safe_dump(bad))
    result = run_cli(
        "deploy", str(path), "--kubeconfig", str(kube_apiserver.kubeconfig), "--namespace", ns, timeout=60
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "spec.serving.triggers.dapr[0]" in result.stderr, result.stderr
    assert result.stdout == ""
    assert _get(kubectl, "fn", "bad", ns) is None
