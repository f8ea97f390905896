"""The e2e node (containerd + kubelet) runs real pods: from local images, with logs and exec, on a
bridge where they reach the host at its gateway address and each other; Deployments scale; a
restricted namespace runs pods under seccomp RuntimeDefault."""

from __future__ import annotations

import http.server
import io
import json
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import require_image
from tests.e2e.stack_kube import Kubectl, KubectlError
from tests.e2e.stack_node import Node
from tests.e2e.stack_procs import wait_until
from tests.e2e.test_stack_loopback import _sockets

pytestmark = pytest.mark.e2e


def probe_pod(name: str, image: str, **spec: Any) -> dict[str, Any]:
    """A pod serving HTTP on 8080 with the probe image, ready once it answers."""
    container = {
        "name": "probe",
        "image": image,
        "imagePullPolicy": "Never",
        "args": ["serve", "8080"],
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
    }
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [container], "terminationGracePeriodSeconds": 5, **spec},
    }


def pod_ready(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any] | None:
    pod = kubectl.json("get", "pod", name, "-n", ns)
    status = pod.get("status", {})
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
    return pod if status.get("phase") == "Running" and ready else None


def wait_ready(kubectl: Kubectl, node: Node, ns: str, name: str) -> dict[str, Any]:
    pod: dict[str, Any] = wait_until(
        lambda: pod_ready(kubectl, ns, name), f"pod {ns}/{name} Running and Ready", 60, node.group.procs
    )
    return pod


@pytest.fixture
def host_server() -> Iterator[int]:
    """An HTTP server on 127.0.0.1 only (an ephemeral port) answering "host says hi"."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"host says hi\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_pod_from_local_image_runs_with_logs_and_exec(
    node: Node, kubectl: Kubectl, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    kubectl.apply(probe_pod("web", node.probe_image), "-n", ns)
    pod = wait_ready(kubectl, node, ns, "web")
    assert pod["spec"]["nodeName"] == node.name
    assert pod["status"]["podIP"].startswith(node.pod_subnet.rsplit(".", 1)[0] + ".")

    logs = kubectl("logs", "web", "-n", ns).stdout
    assert "probe: listening on :8080" in logs

    answer = kubectl("exec", "web", "-n", ns, "--", "/probe", "get", "http://127.0.0.1:8080/").stdout
    assert answer == "probe web\n"
    failed = kubectl("exec", "web", "-n", ns, "--", "/probe", "cat", "/no/such/file", check=False)
    assert failed.returncode == 1 and "no such file" in failed.stderr


def test_pods_reach_the_host_at_the_gateway_and_each_other(
    node: Node, kubectl: Kubectl, k8s_namespace: str, host_server: int
) -> None:
    ns = k8s_namespace
    kubectl.apply([probe_pod("a", node.probe_image), probe_pod("b", node.probe_image)], "-n", ns)
    wait_ready(kubectl, node, ns, "a")
    b_ip = wait_ready(kubectl, node, ns, "b")["status"]["podIP"]

    # Loopback-only servers are out of reach until exposed on the gateway address.
    unexposed = kubectl(
        "exec", "a", "-n", ns, "--", "/probe", "get", f"http://{node.host_ip}:{host_server}/", check=False
    )
    assert unexposed.returncode == 1, unexposed.stdout
    address = node.expose(host_server)
    assert address.startswith(node.host_ip + ":")
    got = kubectl("exec", "a", "-n", ns, "--", "/probe", "get", f"http://{address}/").stdout
    assert got == "host says hi\n"

    assert kubectl("exec", "a", "-n", ns, "--", "/probe", "get", f"http://{b_ip}:8080/").stdout == "probe b\n"
    # Nothing else: no default route, so a packet for any other address is never even sent.
    offnet = kubectl("exec", "a", "-n", ns, "--", "/probe", "get", "http://192.0.2.1/", check=False)
    assert offnet.returncode == 1 and "network is unreachable" in offnet.stderr, offnet.stderr
    # Name resolution stays inside the pod: its only nameserver is its own loopback, where nothing listens.
    resolv = kubectl("exec", "a", "-n", ns, "--", "/probe", "cat", "/etc/resolv.conf").stdout
    assert [line.split()[1] for line in resolv.splitlines() if line.startswith("nameserver")] == ["127.0.0.1"]
    lookup = kubectl(
        "exec", "a", "-n", ns, "--", "/probe", "get", "http://funcd-no-such-host.test/", check=False
    )
    assert lookup.returncode == 1 and "127.0.0.1:53" in lookup.stderr


def test_deployment_scales_to_zero(node: Node, kubectl: Kubectl, k8s_namespace: str) -> None:
    ns, name = k8s_namespace, "scaled"
    template = probe_pod(name, node.probe_image)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": template["metadata"], "spec": template["spec"]},
        },
    }
    kubectl.apply(deployment, "-n", ns)

    def ready_replicas() -> int:
        return int(
            kubectl.json("get", "deployment", name, "-n", ns).get("status", {}).get("readyReplicas", 0)
        )

    wait_until(lambda: ready_replicas() == 2, "2 ready replicas", 90, node.group.procs)
    assert len(running_tasks(node, ns)) == 4  # two sandboxes, two containers

    kubectl("scale", "deployment", name, "-n", ns, "--replicas=0")
    wait_until(
        lambda: not kubectl.json("get", "pods", "-n", ns, "-l", f"app={name}")["items"],
        "the pods to be gone",
        60,
        node.group.procs,
    )
    wait_until(lambda: not running_tasks(node, ns), "containerd to run nothing of the namespace", 30)


def running_tasks(node: Node, ns: str) -> list[str]:
    """IDs of the containerd tasks (sandboxes and containers) of namespace ``ns`` that run."""
    ids = set(
        node.ctr("containers", "ls", "-q", f'labels."io.kubernetes.pod.namespace"=={ns}').stdout.split()
    )
    rows = [line.split() for line in node.ctr("tasks", "ls").stdout.splitlines()[1:]]
    return [row[0] for row in rows if row and row[0] in ids and row[-1] == "RUNNING"]


def test_restricted_namespace_runs_pods_under_seccomp(
    node: Node, kubectl: Kubectl, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    with pytest.raises(KubectlError, match="violates PodSecurity"):
        kubectl.apply(probe_pod("locked", node.probe_image), "-n", ns)

    locked = probe_pod(
        "locked",
        node.probe_image,
        securityContext={"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        container={
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }
        },
    )
    kubectl.apply(locked, "-n", ns)
    wait_ready(kubectl, node, ns, "locked")
    status = dict(
        line.split(":", 1)
        for line in kubectl(
            "exec", "locked", "-n", ns, "--", "/probe", "cat", "/proc/self/status"
        ).stdout.splitlines()
    )
    assert status["Seccomp"].strip() == "2"  # a filter is applied (mode 2), not disabled (0)
    assert status["Uid"].split()[0] == "65532"
    assert int(status["CapEff"].strip(), 16) == 0
    assert status["NoNewPrivs"].strip() == "1"


def test_node_listens_on_loopback_and_the_bridge_only(node: Node) -> None:
    allowed = {"127.0.0.1", node.host_ip}
    found = {p.name: _sockets(p.pid) for p in node.group.procs}
    assert any(addr == node.host_ip for _, addr, _ in found["kubelet"])  # the apiserver's way in
    exposed = {name: [s for s in sockets if s[1] not in allowed] for name, sockets in found.items()}
    assert not any(exposed.values()), f"listening beyond loopback and {node.bridge}: {exposed}"


def test_images_are_never_pulled(node: Node, kubectl: Kubectl, k8s_namespace: str) -> None:
    """A missing image fails at the runtime's proxy on loopback: no registry name is even resolved."""
    ns = k8s_namespace
    kubectl.apply(
        probe_pod("missing", "funcd.local/not-imported:1", container={"imagePullPolicy": "Always"}), "-n", ns
    )

    def pull_failure() -> str | None:
        statuses = (
            kubectl.json("get", "pod", "missing", "-n", ns).get("status", {}).get("containerStatuses", [])
        )
        waiting = statuses[0].get("state", {}).get("waiting", {}) if statuses else {}
        return waiting.get("message") if waiting.get("reason") == "ErrImagePull" else None

    message = wait_until(pull_failure, "the pull to fail", 60, node.group.procs)
    assert "proxyconnect tcp: dial tcp 127.0.0.1:9" in message, message


def test_import_image_under_another_name(
    node: Node, kubectl: Kubectl, k8s_namespace: str, tmp_path: Path
) -> None:
    archive = require_image("pause", "probe.oci.tar")
    assert node.import_image(archive, "funcd.local/renamed:2") == "funcd.local/renamed:2"
    assert node.import_image(archive, "bare-name:3") == "docker.io/library/bare-name:3"
    names = node.ctr("images", "ls", "-q").stdout.split()
    assert {"funcd.local/renamed:2", "docker.io/library/bare-name:3"} <= set(names)
    assert "funcd.local/renamed:1" not in names  # the archive's own tag is not left behind

    # An archive whose index names the image in full (umoci tag "funcd.local/whole:5").
    whole = renamed_archive(archive, "funcd.local/whole:5", tmp_path / "whole.tar")
    assert node.import_image(whole, "funcd.local/whole:6") == "funcd.local/whole:6"
    assert "funcd.local/whole:5" not in node.ctr("images", "ls", "-q").stdout.split()

    pods = [probe_pod("renamed", "funcd.local/renamed:2"), probe_pod("bare", "bare-name:3")]
    kubectl.apply([*pods, probe_pod("whole", "funcd.local/whole:6")], "-n", k8s_namespace)
    for name in ("renamed", "bare", "whole"):
        wait_ready(kubectl, node, k8s_namespace, name)


def renamed_archive(archive: Path, ref: str, out: Path) -> Path:
    """A copy of an OCI layout archive whose index names its image ``ref``."""
    with tarfile.open(archive) as src, tarfile.open(out, "w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member) if member.isfile() else None
            if member.name == "index.json" and data is not None:
                index = json.load(data)
                index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] = ref
                raw = json.dumps(index).encode()
                member.size = len(raw)
                dst.addfile(member, io.BytesIO(raw))
            else:
                dst.addfile(member, data)
    return out


def test_pods_reach_the_session_redis(
    node: Node, node_redis: str, kubectl: Kubectl, k8s_namespace: str
) -> None:
    assert node_redis.startswith(node.host_ip + ":")
    kubectl.apply(probe_pod("client", node.probe_image), "-n", k8s_namespace)
    wait_ready(kubectl, node, k8s_namespace, "client")
    reply = kubectl("exec", "client", "-n", k8s_namespace, "--", "/probe", "send", node_redis, "PING").stdout
    assert reply.strip() == "+PONG"
