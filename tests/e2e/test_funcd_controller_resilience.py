"""The controller survives its own death and the API server's: no manual step to converge again.

(a) 100 Functions, the controller SIGKILLed mid-way and started again: all 100 converge.
(b) An API server of this test's own (the session one is untouched) is stopped and started again on
    the same port over the same etcd (the cluster's data); the running controller lists and watches
    again by itself and reconciles a Function applied after the restart.
(c) A watch the server closes after its timeout is resumed from its resourceVersion, not listed again.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import _stack, require_binary
from tests.e2e.stack_funcd_controller import (
    MANIFESTS,
    _function,
    _get,
    service_account_kubeconfig,
)
from tests.e2e.stack_kube import KubeAPIServer, Kubectl, crds_established, start_kube_apiserver
from tests.e2e.stack_procs import Proc, start, wait_until
from tests.e2e.test_funcd_controller_leader import readyz, reconciles, start_controller

pytestmark = pytest.mark.e2e

COUNT = 100


def _converged(kubectl: Kubectl, ns: str) -> int:
    """How many Functions in ``ns`` have their Deployment and a status for their generation."""
    functions = kubectl.json("get", "fn", "-n", ns)["items"]
    deployments = {d["metadata"]["name"] for d in kubectl.json("get", "deployments", "-n", ns)["items"]}
    return sum(
        1
        for fn in functions
        if fn["metadata"]["name"] in deployments
        and (fn.get("status") or {}).get("observedGeneration") == fn["metadata"]["generation"]
    )


@pytest.mark.usefixtures("funcd_crd")
def test_a_hundred_functions_converge_after_the_controller_is_killed_mid_way(
    kube_apiserver: KubeAPIServer, kubectl: Kubectl, k8s_namespace: str, tmp_path: Path
) -> None:
    ns = k8s_namespace
    kubeconfig = service_account_kubeconfig(kubectl, kube_apiserver, tmp_path)
    first = start_controller("controller", kubeconfig, tmp_path)
    try:
        wait_until(lambda: readyz(first)[0] == 200, "controller /readyz", 60, [first])
        kubectl.apply([_function(f"fn-{i:03d}") for i in range(COUNT)], "-n", ns)
        wait_until(lambda: reconciles(first) >= 5, "the first reconciles", 60, [first])
        first.popen.kill()  # SIGKILL while it works through the queue
        first.popen.wait(10)
        at_kill = _converged(kubectl, ns)
    finally:
        first.stop()
    second = start_controller("controller", kubeconfig, tmp_path)
    try:
        wait_until(lambda: readyz(second)[0] == 200, "the restarted controller's /readyz", 60, [second])
        wait_until(
            lambda: _converged(kubectl, ns) == COUNT,
            f"all {COUNT} Functions to converge ({at_kill} had when the controller was killed)",
            240,
            [second],
            interval=1.0,
        )
    finally:
        second.stop()


@pytest.fixture
def own_apiserver(tmp_path: Path) -> Iterator[KubeAPIServer]:
    """etcd + kube-apiserver for this test alone (restarting the session one would disturb others)."""
    server = start_kube_apiserver(
        require_binary("etcd"),
        require_binary("kube-apiserver"),
        _stack.version("kube-apiserver"),
        tmp_path / "kube",
    )
    yield server
    server.stop()


def _restart_apiserver(server: KubeAPIServer, while_down: Callable[[], None]) -> None:
    """Stop kube-apiserver (SIGTERM), call ``while_down``, and start it again with the same flags:
    same port, same etcd."""
    old = server.group.procs[-1]
    assert old.name == "kube-apiserver", old.describe()
    old.stop()
    wait_until(lambda: server.status("/readyz") == 0, "the API server to be gone", 30)
    while_down()
    new = start(old.name, old.argv, old.log_path.parent)
    server.group.procs[-1] = new
    wait_until(lambda: server.status("/readyz") == 200, "the restarted API server's /readyz", 90, [new])


def test_the_controller_recovers_by_itself_when_the_api_server_restarts(
    own_apiserver: KubeAPIServer, tmp_path: Path
) -> None:
    kubectl = Kubectl(require_binary("kubectl"), own_apiserver.kubeconfig)
    kubectl("apply", "-f", str(MANIFESTS / "crds"))
    crds_established(kubectl, ["functions.funcd.dev"])
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}})
    kubeconfig = service_account_kubeconfig(kubectl, own_apiserver, tmp_path)
    proc = start_controller("controller", kubeconfig, tmp_path)
    try:
        wait_until(lambda: readyz(proc)[0] == 200, "controller /readyz", 60, [proc])
        kubectl.apply(_function("before"), "-n", "apps")
        wait_until(lambda: _get(kubectl, "deployment", "before", "apps"), "the first Deployment", 30, [proc])

        def not_ready_while_down() -> None:
            wait_until(lambda: readyz(proc)[0] == 503, "the controller's /readyz to say 503", 30, [proc])
            assert "lost the API server" in readyz(proc)[1]

        _restart_apiserver(own_apiserver, not_ready_while_down)
        assert proc.alive(), proc.describe()
        wait_until(lambda: readyz(proc)[0] == 200, "/readyz 200 again after the restart", 90, [proc])
        kubectl.apply(_function("after"), "-n", "apps")
        deployment = wait_until(
            lambda: _get(kubectl, "deployment", "after", "apps"),
            "the controller to reconcile a Function applied after the restart",
            90,
            [proc],
        )
        assert deployment["metadata"]["ownerReferences"][0]["name"] == "after"
        assert "watch of" in proc.log_tail(200), "expected the controller to log its watch ending"
        wait_until(lambda: _converged(kubectl, "apps") == 2, "status for both Functions", 30, [proc])
    finally:
        proc.stop()


def _metric(proc: Proc, prefix: str) -> float:
    with urllib.request.urlopen(f"{proc.health}/metrics", timeout=5) as resp:  # type: ignore[attr-defined]
        lines = resp.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(prefix))


@pytest.mark.usefixtures("funcd_crd")
def test_watches_resume_after_the_server_closes_them_without_listing_again(
    kube_apiserver: KubeAPIServer, kubectl: Kubectl, k8s_namespace: str, tmp_path: Path
) -> None:
    ns = k8s_namespace
    kubeconfig = service_account_kubeconfig(kubectl, kube_apiserver, tmp_path)
    # No resync within the test: only the watch can deliver a new Function.
    proc = start_controller("controller", kubeconfig, tmp_path, "--watch-timeout", "1", "--resync", "3600")
    try:
        wait_until(lambda: readyz(proc)[0] == 200, "controller /readyz", 60, [proc])
        timeouts = 'funcd_controller_watch_ends_total{cause="timeout",kind="Function"}'
        wait_until(lambda: _metric(proc, timeouts) >= 3, "three watch timeouts of Functions", 30, [proc])
        kubectl.apply(_function("late"), "-n", ns)
        late = "the Deployment of a Function applied after the timeouts"
        wait_until(lambda: _get(kubectl, "deployment", "late", ns), late, 30, [proc])
        assert _metric(proc, 'funcd_controller_watch_ends_total{cause="error"') == 0  # never listed again
    finally:
        proc.stop()
