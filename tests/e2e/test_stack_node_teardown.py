"""Stopping an e2e node leaves nothing behind: no process it started (containerd, the kubelet, shims,
containers), no mount under its directory, no bridge or veth, no network namespace made on its bridge,
no nftables table, no cgroup, and the kernel settings the kubelet changed are back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e import stack_node_host as host
from tests.e2e.conftest import node_images, require_binary
from tests.e2e.stack_control_plane import ControlPlane
from tests.e2e.stack_kube import KubeAPIServer, Kubectl
from tests.e2e.stack_node import CNI_CACHE, network_name, start_node
from tests.e2e.stack_node_netns import create_netns, node_netns
from tests.e2e.stack_procs import wait_until
from tests.e2e.test_stack_node import pod_ready, probe_pod

pytestmark = pytest.mark.e2e

TAINT = {"key": "funcd.dev/teardown-test", "value": "true", "effect": "NoSchedule"}


def alive(pid: int) -> bool:
    """Running (a zombie that its parent has not reaped counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def test_a_stopped_node_leaves_nothing_behind(
    control_plane: ControlPlane,
    kube_apiserver: KubeAPIServer,
    kubectl: Kubectl,
    k8s_namespace: str,
    tmp_path: Path,
) -> None:
    host.reap_stale_nodes()  # a node left by a killed run would count as another running node
    sysctls_before = host.read_sysctls()
    nft_before = host.nft_tables()
    absent_before = [d for d in host.FIXED_DIRS if not Path(d).exists()]
    files_before = host.runtime_files()
    # A node of its own (the next free bridge and subnet), tainted so that only the pinned pod runs on it.
    node = start_node(
        require_binary("kubelet"),
        kube_apiserver,
        kubectl,
        tmp_path / "node",
        node_images(),
        name="funcd-e2e-teardown",
        taints=[TAINT],
    )
    try:
        ns = k8s_namespace
        pod = probe_pod(
            "pinned", node.probe_image, nodeName=node.name, tolerations=[{**TAINT, "operator": "Equal"}]
        )
        kubectl.apply(pod, "-n", ns)
        wait_until(lambda: pod_ready(kubectl, ns, "pinned"), "the pinned pod Ready", 60, node.group.procs)
        # A pod-like namespace a fixture failed to delete: the node's teardown removes it.
        netns = create_netns(node.bridge, node.pod_subnet, "left", 0)
        assert node_netns(node.bridge) == [netns.name]
        veths = host.bridge_ports(node.bridge)
        assert netns.veth in veths
        runtime_files = host.runtime_files() - files_before
        assert runtime_files  # the sandbox's shim socket and CNI results
        started = {*node.pids, *host.pids_using(node.workdir), *host.cgroup_pids(node.cgroup_root)}
        assert veths and len(started) >= 5  # containerd, kubelet, a shim, the sandbox and the container
        assert host.mounts_under(node.workdir)
        assert host.read_sysctls() != sysctls_before or sysctls_before["vm/overcommit_memory"] == "1"
    finally:
        node.stop()

    assert not [pid for pid in started if alive(pid)], "processes the node started still run"
    assert not host.pids_using(node.workdir)
    assert not host.mounts_under(node.workdir)
    assert not host.link_exists(node.bridge)
    assert not [v for v in veths if host.link_exists(v)]
    assert not node_netns(node.bridge)
    assert host.nft_tables() == nft_before
    # The last node of the machine writes back the values from before the first; others leave them.
    assert host.read_sysctls() == (sysctls_before if host.live_nodes() else node.saved_sysctls)
    assert not host.cgroup_exists(node.cgroup_root)
    assert not [f for f in runtime_files if f.exists()]
    assert not list(CNI_CACHE.glob(f"{network_name(node.bridge)}-*")) if CNI_CACHE.is_dir() else True
    if not host.live_nodes():  # the kubelet's and containerd's fixed directories, if there were none
        assert not [d for d in absent_before if Path(d).exists()]
    assert kubectl("get", "node", node.name, check=False).returncode != 0
    assert os.path.isdir(node.workdir)  # the directory stays for its logs; only mounts are removed


# Run by test_a_killed_node_is_reaped_by_the_next in a child process: start a node, run a pod on
# it, say so, then wait to be killed.
CHILD = """
import json, sys, time
from pathlib import Path
from tests.e2e.conftest import node_images, require_binary
from tests.e2e.stack_kube import KubeAPIServer, Kubectl
from tests.e2e.stack_node import start_node
from tests.e2e.stack_node_netns import create_netns
from tests.e2e.stack_procs import wait_until
from tests.e2e.test_stack_node import pod_ready, probe_pod
from tests.e2e.test_stack_node_teardown import TAINT
args = json.loads(sys.argv[1])
server = KubeAPIServer(**{k: Path(v) if k in ("kubeconfig", "ca_file", "pki_dir") else v
                          for k, v in args["server"].items()})
kubectl = Kubectl(Path(args["kubectl"]), server.kubeconfig)
node = start_node(require_binary("kubelet"), server, kubectl, Path(args["workdir"]), node_images(),
                  name="funcd-e2e-killed", taints=[TAINT])
ns = args["namespace"]
kubectl.apply(probe_pod("doomed", node.probe_image, nodeName=node.name,
                        tolerations=[{**TAINT, "operator": "Equal"}]), "-n", ns)
wait_until(lambda: pod_ready(kubectl, ns, "doomed"), "the pod Ready", 60, node.group.procs)
create_netns(node.bridge, node.pod_subnet, "doomed", 0)
print(json.dumps({"bridge": node.bridge, "cgroup": node.cgroup_root, "pids": node.pids}), flush=True)
time.sleep(300)
"""


def test_a_killed_node_is_reaped_by_the_next(
    control_plane: ControlPlane,
    kube_apiserver: KubeAPIServer,
    kubectl: Kubectl,
    k8s_namespace: str,
    tmp_path: Path,
) -> None:
    """A test process killed mid-run leaves its node running; the next node start cleans it up."""
    server = kube_apiserver
    fields = ("url", "port", "kubeconfig", "token", "ca_file", "pki_dir", "etcd_url", "version")
    args = {
        "server": {f: str(v) if isinstance(v, Path) else v for f in fields for v in [getattr(server, f)]},
        "kubectl": str(kubectl.binary),
        "workdir": str(tmp_path / "node"),
        "namespace": k8s_namespace,
    }
    repo = Path(__file__).resolve().parents[2]
    files_before = host.runtime_files()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(args)], cwd=repo, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # the child prints once its node is Ready (or exits on failure)
        assert line, f"the child exited with {child.wait(timeout=30)} before its node was Ready"
        started = json.loads(line)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    workdir = tmp_path / "node"
    assert host.link_exists(started["bridge"]) and all(alive(p) for p in started["pids"])  # left behind
    assert host.runtime_files() - files_before and host.mounts_under(workdir)
    assert node_netns(started["bridge"])

    assert started["bridge"] in host.reap_stale_nodes()
    assert not [pid for pid in started["pids"] if alive(pid)]
    assert not host.pids_using(workdir)
    assert not host.mounts_under(workdir)
    assert not host.link_exists(started["bridge"])
    assert not node_netns(started["bridge"])
    assert not host.cgroup_exists(started["cgroup"])
    assert started["bridge"] not in host.live_nodes()
    assert not host.runtime_files() - files_before  # its shim socket and CNI results
    kubectl("delete", "pod", "doomed", "-n", k8s_namespace, "--force", "--grace-period=0")
    kubectl("delete", "node", "funcd-e2e-killed", "--ignore-not-found")
    kubectl("delete", "clusterrolebinding", "funcd-e2e-node-funcd-e2e-killed", "--ignore-not-found")
