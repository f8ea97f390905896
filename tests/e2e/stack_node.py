"""A real node for the test cluster: containerd + kubelet, pods on a bridge of their own.

The node joins the apiserver of ``stack_kube`` (the ``control_plane`` fixture schedules onto it).
Pods get addresses on ``bridge`` (10.244.0.0/24 by default) and reach only the host, at the
bridge's gateway address ``host_ip``, and each other: no default route, no masquerade, and a
resolv.conf whose only nameserver is the pod's own loopback. Loopback-only servers of the test
stack are offered to pods by ``expose(port)``. Images never come from a registry:
``import_image(archive, name)`` loads an OCI archive into the node's containerd.
docs/test-stack.md describes the wiring and why each setting is set.

Errors::

    StackError      (stack_procs) a component failed to start, or teardown left something behind
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from ipaddress import ip_network
from pathlib import Path

from tests.e2e import stack_node_host as host
from tests.e2e.stack_kube import KubeAPIServer, Kubectl
from tests.e2e.stack_node_config import (
    NodeLayout,
    archive_refs,
    cni_conflist,
    containerd_toml,
    issue_cert,
    kubelet_config,
    normalize_image,
    write_kubeconfig,
)
from tests.e2e.stack_node_netns import delete_node_netns
from tests.e2e.stack_procs import HOST, ProcGroup, StackError, free_port, http_status, start, wait_until

PAUSE_IMAGE = "funcd.local/pause:1"
PROBE_IMAGE = "funcd.local/probe:1"
CNI_CACHE = host.CNI_CACHE
RESOLV_CONF = "nameserver 127.0.0.1\noptions attempts:1 timeout:1\n"


@dataclass
class Node:
    """A running e2e node (containerd + kubelet) registered with the test apiserver."""

    name: str
    """The Node object's name (kubelet --hostname-override)."""
    host_ip: str
    """The bridge's gateway address: the kubelet's node IP, and where pods reach the host."""
    bridge: str
    """The Linux bridge the pods' veths are attached to."""
    pod_subnet: str
    """The pods' addresses (host-local IPAM)."""
    kubelet_port: int
    """The kubelet's HTTPS port on ``host_ip`` (logs, exec for the apiserver)."""
    layout: NodeLayout
    """Where everything of this node lives (its temporary directory)."""
    kubectl: Kubectl
    """An admin kubectl (for pod deletion at teardown)."""
    pause_image: str = PAUSE_IMAGE
    """The sandbox image, imported at start."""
    probe_image: str = PROBE_IMAGE
    """A test image (``/probe serve [PORT]`` by default on 8080, ``/probe get URL``), imported at start."""
    group: ProcGroup = field(default_factory=ProcGroup)
    """containerd, then the kubelet."""
    saved_sysctls: dict[str, str] = field(default_factory=dict)
    """The kernel settings from before the first node of this machine started (restored by the last)."""
    owns_bridge: bool = False
    """This node created ``bridge`` (teardown deletes only such a bridge)."""
    registered: bool = False
    """This node is registered in the machine-wide record (kernel settings, fixed directories)."""
    nft_before: set[str] = field(default_factory=set)
    """The nftables tables before start (teardown deletes the ones added since)."""
    relays: list[host.Relay] = field(default_factory=list)
    """The relays ``expose`` started."""
    stopped: bool = False

    @property
    def workdir(self) -> Path:
        return self.layout.workdir

    @property
    def containerd_socket(self) -> Path:
        return self.layout.containerd_socket

    @property
    def cgroup_root(self) -> str:
        return f"funcd-e2e-{self.bridge}"  # the bridge is unique on the machine

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.group.procs]

    def ctr(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``ctr --address <socket> --namespace k8s.io ARGS`` (the namespace the CRI plugin uses)."""
        argv = ["ctr", "--address", str(self.containerd_socket), "--namespace", "k8s.io", *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise StackError(f"`{' '.join(argv)}` exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def import_image(self, archive: Path, name: str) -> str:
        """Load an OCI image archive (a tar of an OCI layout with one image, named by a bare tag or a
        whole name in its index) as ``name``.

        ``name`` should carry a registry host (``funcd.local/app:1``): the CRI plugin expands a bare
        ``app:1`` to ``docker.io/library/app:1``, and that is the name stored here too. Pods must use
        ``imagePullPolicy: Never`` or ``IfNotPresent``: the node can reach no registry. Returns the
        stored name."""
        full = normalize_image(name)
        refs = archive_refs(archive)
        if len(refs) != 1 or not refs[0]:
            raise StackError(f"{archive}: expected one image with a reference name, found {refs}")
        if "/" in refs[0] or ":" in refs[0]:  # a whole name: ctr stores it as the CRI plugin expands it
            imported = normalize_image(refs[0])
            self.ctr("images", "import", str(archive))
        else:  # a bare tag (umoci's default): ctr prefixes the repository given as base name
            repo = full.rsplit(":", 1)[0]
            imported = f"{repo}:{refs[0]}"
            self.ctr("images", "import", "--base-name", repo, str(archive))
        if imported != full:
            self.ctr("images", "tag", "--force", imported, full)
            self.ctr("images", "rm", imported)
        return full

    def expose(self, port: int) -> str:
        """Offer the loopback server on ``port`` to pods; returns ``host_ip:PORT`` for them to dial
        (the same port number when it is free on the bridge address)."""
        for existing in self.relays:
            if existing.target == port:
                return existing.address
        relay = host.start_relay(self.host_ip, port)
        self.relays.append(relay)
        return relay.address

    def log_sections(self) -> list[tuple[str, str]]:
        return self.group.log_sections()

    def stop(self) -> None:
        """Tear down in order; every step runs, and the first failure is raised at the end."""
        if self.stopped:
            return
        self.stopped = True
        errors: list[str] = []
        for step in (
            self._stop_relays,
            self._delete_pods,
            self._stop_kubelet,
            self._stop_tasks,
            self._stop_containerd,
            self._kill_leftovers,
            self._unmount,
            self._delete_bridge,
            self._delete_nft_tables,
            self._unregister,
            self._remove_cgroups,
            self._remove_runtime_leftovers,
            self._delete_api_objects,
        ):
            try:
                step()
            except Exception as exc:  # keep tearing down; report what failed
                errors.append(f"{step.__name__.lstrip('_')}: {exc}")
        if errors:
            raise StackError(f"node {self.name} teardown: " + "; ".join(errors))

    def _stop_relays(self) -> None:
        for relay in self.relays:
            relay.stop()

    def _delete_pods(self) -> None:
        if len(self.group.procs) < 2 or not self.group.procs[1].alive():
            return  # no kubelet to stop the containers; the later steps clean up
        selector = f"spec.nodeName={self.name}"
        self.kubectl(
            "delete", "pods", "-A", "--field-selector", selector, "--wait", "--timeout=60s", check=False
        )

    def _stop_kubelet(self) -> None:
        if len(self.group.procs) > 1:
            self.group.procs[1].stop()

    def _stop_tasks(self) -> None:
        if not self.group.procs or not self.group.procs[0].alive():
            return
        for task in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
            self.ctr("tasks", "kill", "--all", "--signal", "SIGKILL", task, check=False)
            self.ctr("tasks", "delete", "--force", task, check=False)
        for container in self.ctr("containers", "ls", "-q", check=False).stdout.split():
            self.ctr("containers", "delete", container, check=False)

    def _stop_containerd(self) -> None:
        if self.group.procs:
            self.group.procs[0].stop()

    def _kill_leftovers(self) -> None:
        """Shims (their command lines name our socket) and anything in our cgroup tree."""
        host.kill_and_wait({*host.pids_using(self.workdir), *host.cgroup_pids(self.cgroup_root)})

    def _unmount(self) -> None:
        host.unmount_all(self.workdir)

    def _delete_nft_tables(self) -> None:
        host.delete_nft_tables(host.nft_tables() - self.nft_before)

    def _remove_cgroups(self) -> None:
        host.remove_cgroup_root(self.cgroup_root)

    def _delete_bridge(self) -> None:
        if self.owns_bridge:
            host.delete_bridge(self.bridge)
            delete_node_netns(self.bridge)  # left by a fixture that failed to delete its own

    def _unregister(self) -> None:
        if self.registered:
            host.unregister_node(self.bridge)

    def _remove_runtime_leftovers(self) -> None:
        host.remove_runtime_leftovers(self.workdir)
        if CNI_CACHE.is_dir():
            for path in CNI_CACHE.glob(f"{network_name(self.bridge)}-*"):
                path.unlink()

    def _delete_api_objects(self) -> None:
        self.kubectl("delete", "node", self.name, "--ignore-not-found", "--wait=false", check=False)
        self.kubectl(
            "delete", "clusterrolebinding", binding_name(self.name), "--ignore-not-found", check=False
        )


def network_name(bridge: str) -> str:
    return f"funcd-e2e-{bridge}"


def binding_name(node: str) -> str:
    return f"funcd-e2e-node-{node}"


def node_ready(kubectl: Kubectl, name: str) -> bool:
    """Ready, and without the not-ready taint the kubelet registers with (the controller-manager's
    node lifecycle controller removes it): pods can be scheduled onto it."""
    proc = kubectl("get", "node", name, "-o", "json", check=False)
    if proc.returncode != 0:
        return False
    info = json.loads(proc.stdout)
    conditions = info.get("status", {}).get("conditions", [])
    taints = {t["key"] for t in info.get("spec", {}).get("taints", [])}
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    return ready and "node.kubernetes.io/not-ready" not in taints


def start_node(
    kubelet_bin: Path,
    server: KubeAPIServer,
    kubectl: Kubectl,
    workdir: Path,
    images: dict[str, Path],
    *,
    name: str = "funcd-e2e-node",
    bridge: str | None = None,
    pod_subnet: str | None = None,
    taints: list[dict[str, str]] | None = None,
    ready_timeout: float = 60,
) -> Node:
    """Start containerd and the kubelet and wait until the Node is Ready.

    ``images`` maps image names to OCI archives to import before the kubelet starts; it must
    hold ``PAUSE_IMAGE`` (the sandbox image). Without ``bridge``, the node claims the first free
    ``funcd<i>`` and uses ``10.244.<i>.0/24`` (``funcd0``, ``10.244.0.0/24`` when it is alone on the
    machine); an explicit ``bridge`` needs an explicit ``pod_subnet`` and must not exist yet."""
    host.reap_stale_nodes()
    claimed = bridge is None
    if bridge is None:
        index = host.claim_bridge()
        bridge, pod_subnet = f"funcd{index}", f"10.244.{index}.0/24"
    elif pod_subnet is None:
        raise ValueError(f"bridge {bridge!r} given without a pod_subnet")
    network = ip_network(pod_subnet)
    host_ip = str(next(network.hosts()))
    layout = NodeLayout(workdir)
    for directory in (layout.pki, layout.cni_conf_dir, layout.cni_data_dir, layout.kubelet_root, layout.logs):
        directory.mkdir(parents=True, exist_ok=True)
    node = Node(name, host_ip, bridge, pod_subnet, free_port(), layout, kubectl, owns_bridge=claimed)
    node.nft_before = host.nft_tables()
    try:
        node.saved_sysctls = host.register_node(bridge, workdir)
        node.registered = True
        _prepare(node, server)
        env = {
            "HTTP_PROXY": "http://127.0.0.1:9",  # a closed port: any attempt to reach a registry fails here
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "NO_PROXY": f"127.0.0.1,localhost,{pod_subnet}",
            "PATH": f"/usr/sbin:/usr/bin:/sbin:/bin:{os.environ.get('PATH', '')}",
        }
        containerd = node.group.add(
            start(
                "containerd", ["containerd", "--config", str(layout.containerd_config)], layout.logs, env=env
            )
        )
        wait_until(
            lambda: node.ctr("version", check=False, timeout=5).returncode == 0,
            "containerd to answer",
            30,
            [containerd],
        )
        for image, archive in images.items():
            node.import_image(archive, image)
        healthz = free_port()
        serving = issue_cert(
            server.pki_dir, layout.pki, "kubelet-serving", f"/CN={name}",
            f"subjectAltName=IP:{host_ip},DNS:{name}\nextendedKeyUsage=serverAuth\n"
            "keyUsage=digitalSignature,keyEncipherment\n",
        )  # fmt: skip
        config = kubelet_config(
            layout,
            node_ip=host_ip,
            port=node.kubelet_port,
            healthz_port=healthz,
            cgroup_root=f"/{node.cgroup_root}",
            serving=serving,
            taints=taints or [],
        )
        layout.kubelet_config.write_text(json.dumps(config, indent=2))
        kubelet = node.group.add(
            start(
                "kubelet",
                [
                    str(kubelet_bin),
                    f"--config={layout.kubelet_config}",
                    f"--kubeconfig={layout.kubeconfig}",
                    f"--root-dir={layout.kubelet_root}",
                    f"--cert-dir={layout.pki}",
                    f"--volume-plugin-dir={layout.workdir / 'volume-plugins'}",
                    f"--hostname-override={name}",
                    f"--node-ip={host_ip}",
                    "--v=1",
                ],
                layout.logs,
                env=env,
            )
        )
        wait_until(
            lambda: http_status(f"http://{HOST}:{healthz}/healthz") == 200, "kubelet /healthz", 60, [kubelet]
        )
        wait_until(lambda: node_ready(kubectl, name), f"node {name} Ready", ready_timeout, node.group.procs)
        return node
    except BaseException:
        with contextlib.suppress(StackError):
            node.stop()
        raise


def _prepare(node: Node, server: KubeAPIServer) -> None:
    """Certificates, RBAC, the cgroup root, the bridge and the runtime's configuration."""
    layout = node.layout
    shutil.copy(server.pki_dir / "ca.crt", layout.pki / "ca.crt")
    cert, key = issue_cert(
        server.pki_dir, layout.pki, "kubelet-client", f"/O=system:nodes/CN=system:node:{node.name}",
        "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
    )  # fmt: skip
    write_kubeconfig(layout.kubeconfig, server.url, layout.pki / "ca.crt", cert, key)
    # Without the Node authorizer, RBAC alone grants the node what the system:node role allows.
    node.kubectl.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": binding_name(node.name)},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:node",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": f"system:node:{node.name}"}
            ],
        }
    )
    # Pods resolve through their own loopback, where nothing listens: every query fails at once and
    # none leaves the pod. (containerd copies the host's resolv.conf when the kubelet passes none.)
    layout.resolv_conf.write_text(RESOLV_CONF)
    prefix = ip_network(node.pod_subnet).prefixlen
    host.create_bridge(node.bridge, f"{node.host_ip}/{prefix}", claimed=node.owns_bridge)
    node.owns_bridge = True
    host.create_cgroup_root(node.cgroup_root)
    conflist = cni_conflist(network_name(node.bridge), node.bridge, node.pod_subnet, node.host_ip, layout)
    (layout.cni_conf_dir / "10-funcd-e2e.conflist").write_text(json.dumps(conflist, indent=2))
    layout.containerd_config.parent.mkdir(parents=True, exist_ok=True)
    layout.containerd_config.write_text(containerd_toml(layout, node.pause_image))
