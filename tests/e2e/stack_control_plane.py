"""The rest of the control plane: kube-controller-manager and kube-scheduler, against the test apiserver.

They turn Deployments into ReplicaSets and Pods, collect garbage (owner references), manage node
taints and schedule pods. Pods stay Pending unless the ``node`` fixture (stack_node) runs. Both
listen on loopback only, with leader election off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.stack_kube import KubeAPIServer
from tests.e2e.stack_procs import HOST, ProcGroup, free_port, http_status, start, wait_until


@dataclass
class ControlPlane:
    """A running kube-controller-manager and kube-scheduler."""

    controller_manager_port: int
    scheduler_port: int
    version: str
    group: ProcGroup = field(default_factory=ProcGroup)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.group.procs]

    def log_sections(self) -> list[tuple[str, str]]:
        return self.group.log_sections()

    def stop(self) -> None:
        self.group.stop()


def _healthy(port: int) -> bool:
    # Both serve /healthz over HTTPS with a self-signed certificate; the status is what matters.
    return http_status(f"https://{HOST}:{port}/healthz", insecure=True) == 200


def start_control_plane(
    controller_manager: Path, scheduler: Path, version: str, server: KubeAPIServer, workdir: Path
) -> ControlPlane:
    pki = server.pki_dir
    group = ProcGroup()
    try:
        cm_port, sched_port = free_port(), free_port()
        group.add(
            start(
                "kube-controller-manager",
                [
                    str(controller_manager),
                    f"--kubeconfig={server.kubeconfig}",
                    f"--authentication-kubeconfig={server.kubeconfig}",
                    f"--authorization-kubeconfig={server.kubeconfig}",
                    f"--bind-address={HOST}",
                    f"--secure-port={cm_port}",
                    f"--cert-dir={workdir / 'cm-certs'}",
                    f"--service-account-private-key-file={pki / 'sa.key'}",
                    f"--root-ca-file={pki / 'ca.crt'}",
                    f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                    f"--cluster-signing-key-file={pki / 'ca.key'}",
                    "--use-service-account-credentials=false",
                    "--leader-elect=false",
                    # nodelifecycle removes the not-ready taint a kubelet registers with, once the
                    # node is Ready (stack_node); nodeipam is off: the node's CNI config has its range.
                    "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller",
                    "--concurrent-gc-syncs=5",
                    # The HPA (behind KEDA's ScaledObjects) re-reads its metrics every 2s, not 15s.
                    "--horizontal-pod-autoscaler-sync-period=2s",
                    "--profiling=false",
                    "--v=1",
                ],
                workdir / "logs",
            )
        )
        group.add(
            start(
                "kube-scheduler",
                [
                    str(scheduler),
                    f"--kubeconfig={server.kubeconfig}",
                    f"--authentication-kubeconfig={server.kubeconfig}",
                    f"--authorization-kubeconfig={server.kubeconfig}",
                    f"--bind-address={HOST}",
                    f"--secure-port={sched_port}",
                    f"--cert-dir={workdir / 'sched-certs'}",
                    "--leader-elect=false",
                    "--profiling=false",
                    "--v=1",
                ],
                workdir / "logs",
            )
        )
        wait_until(lambda: _healthy(cm_port), "kube-controller-manager /healthz", 90, group.procs)
        wait_until(lambda: _healthy(sched_port), "kube-scheduler /healthz", 90, group.procs)
        return ControlPlane(cm_port, sched_port, version, group)
    except BaseException:
        group.stop()
        raise
