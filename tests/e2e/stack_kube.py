"""A real control plane for tests: etcd + kube-apiserver, a kubectl bound to it, and KEDA.

Objects are stored and validated (RBAC, admission including PodSecurity). The scheduler and
controller-manager come from ``stack_control_plane``, a node (kubelet) from ``stack_node``; the
apiserver reaches a kubelet at its InternalIP with the test CA's client certificate. KEDA needs
none of them: it scales a workload by writing its ``/scale`` subresource.

Errors::

    StackError          (stack_procs) a component failed to start or get ready
    KubectlError        a kubectl command exited non-zero; carries its stderr
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.stack_procs import HOST, Proc, ProcGroup, free_port, http_status, start, wait_until

KEDA_NAMESPACE = "keda"
FRONT_PROXY_CLIENT = "funcd-e2e-front-proxy"  # CN of the aggregation layer's proxy client certificate


class KubectlError(RuntimeError):
    """kubectl exited non-zero."""

    def __init__(self, argv: Sequence[str], proc: subprocess.CompletedProcess[str]) -> None:
        self.argv, self.returncode, self.stdout, self.stderr = (
            list(argv),
            proc.returncode,
            proc.stdout,
            proc.stderr,
        )
        super().__init__(
            f"`{' '.join(argv)}` exited {proc.returncode}:\n{proc.stderr.strip() or proc.stdout.strip()}"
        )


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {proc.stderr}")


def make_pki(directory: Path) -> None:
    """CA, a serving/client certificate for 127.0.0.1, and a service-account signing key pair."""
    if not shutil.which("openssl"):
        raise RuntimeError("the openssl command is needed to make the test PKI (apt-get install openssl)")
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "3",
        "-subj",
        "/CN=funcd-e2e-ca",
        cwd=directory,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "tls.key",
        "-out",
        "tls.csr",
        "-subj",
        "/CN=127.0.0.1",
        cwd=directory,
    )
    (directory / "tls.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "keyUsage=digitalSignature,keyEncipherment\n"
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "tls.crt",
        "-days",
        "3",
        "-extfile",
        "tls.ext",
        cwd=directory,
    )
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=directory)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=directory)
    # The aggregation layer's front proxy: its CA and the client certificate the apiserver proxies with.
    new_key = ["req", "-newkey", "rsa:2048", "-nodes"]
    _openssl(*new_key, "-x509", "-days", "3", "-keyout", "front-proxy-ca.key", "-out", "front-proxy-ca.crt",
             "-subj", "/CN=funcd-e2e-front-proxy-ca", cwd=directory)  # fmt: skip
    _openssl(*new_key, "-keyout", "front-proxy-client.key", "-out", "front-proxy-client.csr",
             "-subj", f"/CN={FRONT_PROXY_CLIENT}", cwd=directory)  # fmt: skip
    _openssl("x509", "-req", "-in", "front-proxy-client.csr", "-CA", "front-proxy-ca.crt", "-days", "3",
             "-CAkey", "front-proxy-ca.key", "-CAcreateserial", "-out", "front-proxy-client.crt",
             cwd=directory)  # fmt: skip


@dataclass
class KubeAPIServer:
    """A running etcd + kube-apiserver pair on loopback."""

    url: str
    """https://127.0.0.1:<port>"""
    port: int
    kubeconfig: Path
    """Admin kubeconfig (bearer token of a system:masters user)."""
    token: str
    ca_file: Path
    pki_dir: Path
    etcd_url: str
    version: str
    group: ProcGroup = field(default_factory=ProcGroup)

    @property
    def pid(self) -> int:
        return self.group.procs[-1].pid

    @property
    def log_path(self) -> Path:
        return self.group.procs[-1].log_path

    def status(self, path: str) -> int:
        return http_status(self.url + path, token=self.token, ca_file=self.ca_file)

    def log_sections(self) -> list[tuple[str, str]]:
        return self.group.log_sections()

    def stop(self) -> None:
        self.group.stop()


def start_kube_apiserver(
    etcd_bin: Path,
    apiserver_bin: Path,
    version: str,
    workdir: Path,
    service_cidr: str = "10.96.0.0/24",
) -> KubeAPIServer:
    """etcd + kube-apiserver; ``service_cidr`` bounds how many ClusterIP Services can exist (a /24: 254)."""
    pki = workdir / "pki"
    make_pki(pki)
    group = ProcGroup()
    try:
        etcd_port, peer_port = free_port(), free_port()
        etcd_url = f"http://{HOST}:{etcd_port}"
        peer_url = f"http://{HOST}:{peer_port}"
        etcd = group.add(
            start(
                "etcd",
                [
                    str(etcd_bin),
                    "--name",
                    "e2e",
                    "--data-dir",
                    str(workdir / "etcd-data"),
                    "--listen-client-urls",
                    etcd_url,
                    "--advertise-client-urls",
                    etcd_url,
                    "--listen-peer-urls",
                    peer_url,
                    "--initial-advertise-peer-urls",
                    peer_url,
                    "--initial-cluster",
                    f"e2e={peer_url}",
                    "--initial-cluster-state",
                    "new",
                    "--unsafe-no-fsync",
                    "--logger",
                    "zap",
                    "--log-level",
                    "warn",
                ],
                workdir / "logs",
            )
        )
        wait_until(lambda: http_status(etcd_url + "/health") == 200, "etcd /health", 30, [etcd])

        token = secrets.token_hex(16)
        (workdir / "tokens.csv").write_text(f'{token},funcd-e2e-admin,funcd-e2e-admin,"system:masters"\n')
        port = free_port()
        group.add(
            start(
                "kube-apiserver",
                [
                    str(apiserver_bin),
                    f"--etcd-servers={etcd_url}",
                    f"--bind-address={HOST}",
                    f"--advertise-address={HOST}",
                    f"--secure-port={port}",
                    f"--cert-dir={workdir / 'apiserver-certs'}",
                    f"--tls-cert-file={pki / 'tls.crt'}",
                    f"--tls-private-key-file={pki / 'tls.key'}",
                    f"--client-ca-file={pki / 'ca.crt'}",
                    f"--token-auth-file={workdir / 'tokens.csv'}",
                    "--authorization-mode=RBAC",
                    "--enable-admission-plugins=PodSecurity",
                    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                    f"--service-account-key-file={pki / 'sa.pub'}",
                    f"--service-account-signing-key-file={pki / 'sa.key'}",
                    "--api-audiences=https://kubernetes.default.svc.cluster.local",
                    f"--service-cluster-ip-range={service_cidr}",
                    "--profiling=false",
                    # The default reconciler would publish 127.0.0.1 as the kubernetes Service endpoint,
                    # which the API rejects (loopback); nothing in the tests uses that Service.
                    "--endpoint-reconciler-type=none",
                    # Reach a kubelet (logs, exec) at its node IP: the default order starts with the
                    # Hostname address, which would be resolved through DNS.
                    "--kubelet-preferred-address-types=InternalIP",
                    f"--kubelet-client-certificate={pki / 'tls.crt'}",
                    f"--kubelet-client-key={pki / 'tls.key'}",
                    f"--kubelet-certificate-authority={pki / 'ca.crt'}",
                    # Aggregation (stack_keda_adapter); APIServices dialled at Endpoints (no kube-proxy).
                    f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
                    f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
                    "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                    "--requestheader-group-headers=X-Remote-Group",
                    "--requestheader-username-headers=X-Remote-User",
                    f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
                    f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
                    "--enable-aggregator-routing=true",
                    "--v=1",
                ],
                workdir / "logs",
            )
        )
        url = f"https://{HOST}:{port}"
        kubeconfig = workdir / "kubeconfig"
        kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "e2e",
                    "clusters": [
                        {
                            "name": "e2e",
                            "cluster": {"server": url, "certificate-authority": str(pki / "ca.crt")},
                        }
                    ],
                    "users": [{"name": "admin", "user": {"token": token}}],
                    "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "admin"}}],
                },
                indent=2,
            )
        )
        server = KubeAPIServer(url, port, kubeconfig, token, pki / "ca.crt", pki, etcd_url, version, group)
        wait_until(lambda: server.status("/readyz") == 200, "kube-apiserver /readyz", 90, group.procs)
        wait_until(
            lambda: server.status("/api/v1/namespaces/default") == 200,
            "the default namespace",
            30,
            group.procs,
        )
        return server
    except BaseException:
        group.stop()
        raise


class Kubectl:
    """``kubectl --kubeconfig <admin kubeconfig> ...``; raises KubectlError with stderr on failure."""

    def __init__(self, binary: Path, kubeconfig: Path) -> None:
        self.binary, self.kubeconfig = binary, kubeconfig

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.binary), "--kubeconfig", str(self.kubeconfig), *args]
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise KubectlError(argv, proc)
        return proc

    def json(self, *args: str) -> Any:
        """Run ``kubectl ARGS -o json`` and parse the output."""
        return json.loads(self(*args, "-o", "json").stdout)

    def apply(
        self,
        manifest: dict[str, Any] | list[dict[str, Any]] | str | Path,
        *args: str,
        server_side: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Apply a manifest: an object, a list of objects, YAML/JSON text, or a file or directory."""
        extra = ["--server-side", "--force-conflicts"] if server_side else []
        if isinstance(manifest, Path):
            return self("apply", *extra, *args, "-f", str(manifest))
        if isinstance(manifest, (dict, list)):
            items = manifest if isinstance(manifest, list) else [manifest]
            manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        return self("apply", *extra, *args, "-f", "-", input=manifest)


@dataclass
class KedaOperator:
    """A running KEDA operator, watching all namespaces of the test apiserver."""

    proc: Proc
    namespace: str
    crds_dir: Path
    probe_port: int
    metrics_port: int
    version: str
    metrics_service_port: int = 0
    """The metrics gRPC server's port on 127.0.0.1 (KEDA's metrics adapter reads scalers through it)."""

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def log_path(self) -> Path:
        return self.proc.log_path

    def log_sections(self) -> list[tuple[str, str]]:
        return [(f"keda-operator log ({self.proc.log_path})", self.proc.log_tail(40))]

    def stop(self) -> None:
        self.proc.stop()


def crds_established(kubectl: Kubectl, names: list[str], timeout: float = 60) -> None:
    """Bounded wait until every named CRD is Established (``kubectl wait`` fails outright while a new
    CRD has no conditions yet)."""

    def established() -> bool:
        for name in names:
            crd = kubectl.json("get", "crd", name)
            conditions = (crd.get("status") or {}).get("conditions") or []
            if not any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                return False
        return True

    wait_until(established, f"CRDs {', '.join(names)} to be Established", timeout)


def start_keda(
    binary: Path, version: str, crds_dir: Path, server: KubeAPIServer, kubectl: Kubectl, workdir: Path
) -> KedaOperator:
    kubectl.apply(crds_dir, server_side=True)
    crds_established(
        kubectl,
        [f"{p.stem.split('_', 1)[1]}.{p.stem.split('_', 1)[0]}" for p in sorted(crds_dir.glob("*.yaml"))],
    )
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": KEDA_NAMESPACE}})
    # KEDA's metrics gRPC server insists on a certificate; reuse the test CA's loopback certificate.
    certs = workdir / "keda-certs"
    certs.mkdir(parents=True, exist_ok=True)
    for name in ("ca.crt", "tls.crt", "tls.key"):
        shutil.copy(server.pki_dir / name, certs / name)
    probe_port, metrics_port, grpc_port = free_port(), free_port(), free_port()
    proc = start(
        "keda-operator",
        [
            str(binary),
            f"--health-probe-bind-address={HOST}:{probe_port}",
            f"--metrics-bind-address={HOST}:{metrics_port}",
            f"--metrics-service-bind-address={HOST}:{grpc_port}",
            "--leader-elect=false",
            f"--cert-dir={certs}",
            f"--ca-dir={certs}",
            "--enable-webhook-patching=false",
            "--enable-apiservice-patching=false",
            "--zap-log-level=info",
            "--zap-encoder=console",
        ],
        workdir / "logs",
        env={
            "KUBECONFIG": str(server.kubeconfig),
            "WATCH_NAMESPACE": "",
            "POD_NAMESPACE": KEDA_NAMESPACE,
            "KEDA_CLUSTER_OBJECT_NAMESPACE": KEDA_NAMESPACE,
        },
    )
    try:
        wait_until(
            lambda: http_status(f"http://{HOST}:{probe_port}/readyz") == 200,
            "keda-operator /readyz",
            90,
            [proc],
        )
    except BaseException:
        proc.stop()
        raise
    return KedaOperator(proc, KEDA_NAMESPACE, crds_dir, probe_port, metrics_port, version, grpc_port)
