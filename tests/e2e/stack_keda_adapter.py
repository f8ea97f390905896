"""KEDA's metrics adapter behind the kube-apiserver's aggregation layer, so the HPA scales past 1.

The KEDA operator alone scales a workload 0 <-> 1; from 1 to N, KEDA creates an HPA whose external
metric the kube-controller-manager reads at ``/apis/external.metrics.k8s.io/v1beta1``. The
apiserver proxies that group to the adapter (an APIService), which asks the operator's metrics
gRPC server (mutual TLS with the operator's certificates) for the scaler's value.

The adapter's /metrics listener (``--port``) has no address flag and binds every interface, so the
adapter runs like a pod: in a network namespace of its own on the e2e node's bridge
(``stack_node_netns``), at a reserved address of the pod subnet. From there it reaches the host only
at ``node.host_ip``, where relays (``node.expose``) offer the apiserver and the operator's gRPC port;
both serve the test CA's loopback certificate, so the adapter names them ``localhost`` in TLS. The
apiserver dials the adapter at its Endpoints (``--enable-aggregator-routing``: there is no
kube-proxy), a selector-less Service's Endpoints object holding the namespace's address.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.stack_kube import KEDA_NAMESPACE, KedaOperator, KubeAPIServer, Kubectl
from tests.e2e.stack_node import Node
from tests.e2e.stack_node_netns import NodeNetns, create_netns
from tests.e2e.stack_procs import Proc, StackError, start, wait_until

SERVICE = "keda-metrics-apiserver"
APISERVICE = "v1beta1.external.metrics.k8s.io"
EXTERNAL_METRICS = "/apis/external.metrics.k8s.io/v1beta1"
SECURE_PORT = 6443  # inside the adapter's own network namespace, where nothing else listens
METRICS_PORT = 8080
TLS_NAME = "localhost"  # in the SANs of the test CA's loopback certificate (stack_kube.make_pki)


@dataclass
class KedaMetricsAdapter:
    """A running KEDA metrics adapter, registered and Available as ``external.metrics.k8s.io``."""

    proc: Proc
    """The adapter process."""
    address: str
    """``ip:port`` it serves the metrics API on, inside ``netns`` (the Endpoints' address)."""
    netns: NodeNetns
    """The network namespace it runs in (on the node's bridge)."""
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
        errors = []
        for step in (self.proc.stop, self.netns.delete):
            try:
                step()
            except Exception as exc:  # keep tearing down; report what failed
                errors.append(f"{step.__qualname__}: {exc}")
        if errors:
            raise StackError("keda-adapter teardown: " + "; ".join(errors))


def write_kubeconfig(path: Path, server: KubeAPIServer, address: str) -> None:
    """The admin kubeconfig, for the apiserver at ``address`` (a relay on the bridge)."""
    cluster = {
        "server": f"https://{address}",
        "certificate-authority": str(server.ca_file),
        "tls-server-name": TLS_NAME,
    }
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "e2e",
        "clusters": [{"name": "e2e", "cluster": cluster}],
        "users": [{"name": "admin", "user": {"token": server.token}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "admin"}}],
    }
    path.write_text(json.dumps(config, indent=2))


def api_objects(ip: str, port: int) -> list[dict[str, Any]]:
    """The Service + Endpoints at ``ip:port`` and the APIService routed to them."""
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
            "subsets": [{"addresses": [{"ip": ip}], "ports": [{"name": "https", "port": port}]}],
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
    node: Node,
    workdir: Path,
    ready_timeout: float = 90,
) -> KedaMetricsAdapter:
    """Start the adapter in a network namespace on ``node``'s bridge, register it and wait until the
    APIService is Available."""
    # The adapter dials the operator's gRPC server with ca.crt/tls.crt/tls.key from --cert-dir, the
    # same files the operator serves with (the test CA's 127.0.0.1 certificate).
    certs = workdir / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    for name in ("ca.crt", "tls.crt", "tls.key"):
        shutil.copy(server.pki_dir / name, certs / name)
    kubeconfig = workdir / "kubeconfig"
    write_kubeconfig(kubeconfig, server, node.expose(server.port))
    grpc = node.expose(operator.metrics_service_port)
    netns = create_netns(node.bridge, node.pod_subnet, "keda", 0)
    address = f"{netns.address}:{SECURE_PORT}"
    try:
        proc = start(
            "keda-adapter",
            netns.argv(
                [
                    str(binary),
                    f"--bind-address={netns.address}",
                    f"--secure-port={SECURE_PORT}",
                    f"--cert-dir={certs}",
                    f"--tls-cert-file={certs / 'tls.crt'}",
                    f"--tls-private-key-file={certs / 'tls.key'}",
                    f"--lister-kubeconfig={kubeconfig}",
                    f"--authentication-kubeconfig={kubeconfig}",
                    f"--authorization-kubeconfig={kubeconfig}",
                    f"--metrics-service-address={grpc}",
                    f"--metrics-service-grpc-authority={TLS_NAME}",
                    f"--port={METRICS_PORT}",
                    "--zap-log-level=info",
                    "--zap-encoder=console",
                ]
            ),
            workdir / "logs",
            env={
                "KUBECONFIG": str(kubeconfig),
                "WATCH_NAMESPACE": "",
                "POD_NAMESPACE": KEDA_NAMESPACE,
                "KEDA_CLUSTER_OBJECT_NAMESPACE": KEDA_NAMESPACE,
            },
        )
    except BaseException:
        netns.delete()
        raise
    adapter = KedaMetricsAdapter(proc, address, netns, version, kubectl)
    try:
        kubectl.apply(api_objects(netns.address, SECURE_PORT))
        wait_until(
            lambda: apiservice_available(kubectl),
            f"APIService {APISERVICE} Available (adapter at {address} in netns {netns.name})",
            ready_timeout,
            [proc],
            interval=0.5,
        )
    except BaseException:
        adapter.stop()
        raise
    return adapter
