"""Leader election: two controllers stand for the Lease funcd-controller; exactly one reconciles, and
when it dies (SIGKILL, no release) the other takes over within the lease duration.

Both run as the ServiceAccount from manifests/ (the ClusterRole must allow leases get/create/update).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack_funcd_controller import (
    _function,
    _get,
    service_account_kubeconfig,
)
from tests.e2e.stack_kube import KubeAPIServer, Kubectl
from tests.e2e.stack_procs import HOST, Proc, free_port, start, wait_until
from tests.support import FUNCD

pytestmark = pytest.mark.e2e

LEASE = ("funcd-controller", "funcd-system")
TIMING = ("--lease-duration", "4", "--renew-deadline", "3", "--retry-period", "1")


def start_controller(
    name: str, kubeconfig: Path, workdir: Path, *extra: str, env: dict[str, str | None] | None = None
) -> Proc:
    """``funcd controller`` as ``name``; its health URL is ``proc.health``."""
    port = free_port()
    argv = [*FUNCD, "controller", "--kubeconfig", str(kubeconfig)]
    argv += ["--health-host", HOST, "--health-port", str(port), "--resync", "2", *extra]
    proc = start(name, argv, workdir / "logs", env=env)
    proc.health = f"http://{HOST}:{port}"  # type: ignore[attr-defined]
    return proc


def readyz(proc: Proc) -> tuple[int, str]:
    """Status and body of the controller's /readyz (0 when it does not answer)."""
    try:
        with urllib.request.urlopen(f"{proc.health}/readyz", timeout=2) as resp:  # type: ignore[attr-defined]
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()
    except OSError:
        return 0, ""


def reconciles(proc: Proc) -> float:
    """Successful reconciles so far, from the controller's /metrics (0 when none is exported)."""
    with urllib.request.urlopen(f"{proc.health}/metrics", timeout=5) as resp:  # type: ignore[attr-defined]
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith('funcd_controller_reconciles_total{result="success"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def holder(kubectl: Kubectl) -> str | None:
    lease = _get(kubectl, "lease", *LEASE) or {}
    return (lease.get("spec") or {}).get("holderIdentity")


@pytest.mark.usefixtures("funcd_crd")
def test_one_of_two_controllers_leads_and_the_other_takes_over_when_it_is_killed(
    control_plane: Any,
    kube_apiserver: KubeAPIServer,
    kubectl: Kubectl,
    k8s_namespace: str,
    tmp_path: Path,
) -> None:
    kubeconfig = service_account_kubeconfig(kubectl, kube_apiserver, tmp_path)
    kubectl("delete", "lease", *LEASE[:1], "-n", LEASE[1], "--ignore-not-found")
    procs = {
        name: start_controller(
            name,
            kubeconfig,
            tmp_path,
            "--leader-elect",
            *TIMING,
            env={"POD_NAME": name, "POD_NAMESPACE": None},
        )
        for name in ("alpha", "beta")
    }
    try:
        all_procs = list(procs.values())
        leader_name = wait_until(
            lambda: next((n for n, p in procs.items() if readyz(p)[0] == 200), None),
            "one controller to lead (/readyz 200)",
            60,
            all_procs,
        )
        leader = procs[leader_name]
        (standby_name,) = set(procs) - {leader_name}
        standby = procs[standby_name]
        assert holder(kubectl) == leader_name
        # Once connected (discovery done), the other one stands by: not ready, not reconciling.
        wait_until(lambda: "standby" in readyz(standby)[1], "the other one to stand by", 30, all_procs)
        assert readyz(standby)[0] == 503

        ns = k8s_namespace
        kubectl.apply(_function("first"), "-n", ns)
        wait_until(lambda: _get(kubectl, "deployment", "first", ns), "the leader to reconcile", 30, all_procs)
        wait_until(lambda: reconciles(leader) > 0, "a reconcile on the leader's /metrics", 30, all_procs)
        assert reconciles(standby) == 0
        assert readyz(standby)[0] == 503 and holder(kubectl) == leader_name

        leader.popen.kill()  # SIGKILL: the Lease is not released, it must expire
        leader.popen.wait(10)
        kubectl.apply(_function("second"), "-n", ns)
        # lease 4 s + retry 1 s, plus discovery and a first list: bounded well below 30 s
        wait_until(lambda: readyz(standby)[0] == 200, "the standby to take over", 30, [standby])
        assert holder(kubectl) == standby_name
        wait_until(
            lambda: _get(kubectl, "deployment", "second", ns),
            "the new leader to reconcile a Function applied after the failover",
            30,
            [standby],
        )
        wait_until(lambda: reconciles(standby) > 0, "a reconcile on the new leader's /metrics", 30, [standby])
    finally:
        for proc in procs.values():
            proc.stop()


@pytest.mark.usefixtures("funcd_crd")
def test_a_leader_that_loses_its_lease_exits_to_stand_again(
    kube_apiserver: KubeAPIServer, kubectl: Kubectl, k8s_namespace: str, tmp_path: Path
) -> None:
    import datetime as dt
    import json

    ns = k8s_namespace  # a Lease of this test's own
    kubeconfig = service_account_kubeconfig(kubectl, kube_apiserver, tmp_path)
    args = ("--leader-elect", "--lease-namespace", ns, *TIMING)
    proc = start_controller("alpha", kubeconfig, tmp_path, *args, env={"POD_NAME": "alpha"})
    try:
        wait_until(lambda: readyz(proc)[0] == 200, "the only candidate to lead", 60, [proc])
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        patch = {"spec": {"holderIdentity": "intruder", "renewTime": now, "acquireTime": now}}
        kubectl("patch", "lease", LEASE[0], "-n", ns, "--type", "merge", "-p", json.dumps(patch))
        # It cannot renew for the renew deadline (3 s) while the intruder's term (4 s) runs: it exits.
        wait_until(lambda: not proc.alive(), "the controller to exit", 30)
        assert proc.popen.returncode == 1, proc.log_tail()
        assert "lost the Lease" in proc.log_tail(), proc.log_tail()
    finally:
        proc.stop()
