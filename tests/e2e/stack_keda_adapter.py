"""KEDA's metrics adapter behind the kube-apiserver's aggregation layer, so the HPA scales past 1.

The KEDA operator alone scales a workload 0 <-> 1; from 1 to N, KEDA creates an HPA whose external
metric the kube-controller-manager reads at ``/apis/external.metrics.k8s.io/v1beta1``. The
apiserver proxies that group to the adapter (an APIService), which asks the operator's metrics
gRPC server (mutual TLS with the operator's certificates) for the scaler's value.

The apiserver dials an APIService's Service at its Endpoints (``--enable-aggregator-routing``:
there is no kube-proxy), and Endpoints may not hold a loopback address: the adapter serves on the
e2e node's bridge address, behind a selector-less Service and an Endpoints object. Its /metrics
listener (``--port``) has no address flag and binds every interface, on an ephemeral port.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.stack_kube import KEDA_NAMESPACE, KedaOperator, KubeAPIServer, Kubectl
from tests.e2e.stack_procs import HOST, Proc, free_port, start, wait_until

SERVICE = "keda-metrics-apiserver"
APISERVICE = "v1beta1.external.metrics.k8s.io"
EXTERNAL_METRICS = "/apis/external.metrics.k8s.io/v1beta1"


@dataclass
class KedaMetricsAdapter:
    """A running KEDA metrics adapter, registered and Available as ``external.metrics.k8s.io``."""

    proc: Proc
    """The adapter process."""
    address: str
    """``host_ip:port`` it serves the metrics API on (the Endpoints' address)."""
    version: str
    """The pinned KEDA version."""
    kubectl: Kubectl
    """An admin kubectl (deletes the API objects at teardown)."""

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def log_path(self) -> Path:
        return self.proc.log_path

    def log_sections(self) -> list[tuple[str, str]]:
        return [(f"keda-adapter log ({self.proc.log_path})", self.proc.log_tail(40))]

    def stop(self) -> None:
        # The APIService goes first: an unavailable aggregated group fails discovery, which stalls
        # namespace deletion and the garbage collector for the rest of the session.
        self.kubectl("delete", "apiservice", APISERVICE, "--ignore-not-found", check=False)
        self.kubectl(
            "delete", "service,endpoints", SERVICE, "-n", KEDA_NAMESPACE, "--ignore-not-found", check=False
        )
        self.proc.stop()


def api_objects(host_ip: str, port: int) -> list[dict[str, Any]]:
    """The Service + Endpoints at ``host_ip:port`` and the APIService routed to them."""
    meta = {"name": SERVICE, "namespace": KEDA_NAMESPACE}
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": meta,
            "subsets": [{"addresses": [{"ip": host_ip}], "ports": [{"name": "https", "port": port}]}],
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": APISERVICE},
            "spec": {
                "group": "external.metrics.k8s.io",
                "version": "v1beta1",
                "service": {"name": SERVICE, "namespace": KEDA_NAMESPACE, "port": 443},
                # The adapter serves the test CA's loopback certificate, not one for the Service name.
                "insecureSkipTLSVerify": True,
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
            },
        },
    ]


def apiservice_available(kubectl: Kubectl) -> bool:
    status = kubectl.json("get", "apiservice", APISERVICE).get("status", {})
    return any(c["type"] == "Available" and c["status"] == "True" for c in status.get("conditions", []))


def start_keda_adapter(
    binary: Path,
    version: str,
    server: KubeAPIServer,
    kubectl: Kubectl,
    operator: KedaOperator,
    host_ip: str,
    workdir: Path,
    ready_timeout: float = 90,
) -> KedaMetricsAdapter:
    """Start the adapter on ``host_ip``, register it and wait until the APIService is Available."""
    # The adapter dials the operator's gRPC server with ca.crt/tls.crt/tls.key from --cert-dir, the
    # same files the operator serves with (the test CA's 127.0.0.1 certificate).
    certs = workdir / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    for name in ("ca.crt", "tls.crt", "tls.key"):
        shutil.copy(server.pki_dir / name, certs / name)
    port = free_port()
    kubeconfig = str(server.kubeconfig)
    proc = start(
        "keda-adapter",
        [
            str(binary),
            f"--bind-address={host_ip}",
            f"--secure-port={port}",
            f"--cert-dir={certs}",
            f"--tls-cert-file={certs / 'tls.crt'}",
            f"--tls-private-key-file={certs / 'tls.key'}",
            f"--lister-kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--metrics-service-address={HOST}:{operator.metrics_service_port}",
            f"--port={free_port()}",
            "--zap-log-level=info",
            "--zap-encoder=console",
        ],
        workdir / "logs",
        env={
            "KUBECONFIG": kubeconfig,
            "WATCH_NAMESPACE": "",
            "POD_NAMESPACE": KEDA_NAMESPACE,
            "KEDA_CLUSTER_OBJECT_NAMESPACE": KEDA_NAMESPACE,
        },
    )
    adapter = KedaMetricsAdapter(proc, f"{host_ip}:{port}", version, kubectl)
    try:
        kubectl.apply(api_objects(host_ip, port))
        wait_until(
            lambda: apiservice_available(kubectl),
            f"APIService {APISERVICE} Available (adapter at {host_ip}:{port})",
            ready_timeout,
            [proc],
            interval=0.5,
        )
    except BaseException:
        adapter.stop()
        raise
    return adapter
