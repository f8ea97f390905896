"""The e2e node's configuration files (certificates, kubeconfig, containerd, CNI, kubelet) and image
names.

Every path points under the node's own directory; docs/test-stack.md says why each setting is set.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
from dataclasses import dataclass
from ipaddress import ip_network
from pathlib import Path
from typing import Any

RESERVED = 16
"""How many of the subnet's last addresses host-local IPAM does not hand out (``.240``-``.255`` of a
/24): pod-like network namespaces of host processes take fixed ones there (``reserved_address``)."""


@dataclass(frozen=True)
class NodeLayout:
    """Where everything of one node lives, all under ``workdir``."""

    workdir: Path
    """The node's directory (a pytest temporary directory)."""

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def containerd_root(self) -> Path:
        return self.workdir / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.workdir / "containerd" / "state"

    @property
    def containerd_socket(self) -> Path:
        return self.workdir / "containerd" / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.workdir / "containerd" / "config.toml"

    @property
    def runc_root(self) -> Path:
        return self.workdir / "containerd" / "runc"

    @property
    def cni_conf_dir(self) -> Path:
        return self.workdir / "cni" / "net.d"

    @property
    def cni_data_dir(self) -> Path:
        return self.workdir / "cni" / "ipam"

    @property
    def kubelet_root(self) -> Path:
        return self.workdir / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.workdir / "kubelet-config.json"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubelet.kubeconfig"

    @property
    def resolv_conf(self) -> Path:
        return self.workdir / "resolv.conf"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"


def issue_cert(ca_dir: Path, out: Path, name: str, subject: str, extensions: str) -> tuple[Path, Path]:
    """A key and a certificate signed by the test CA (``ca.crt``/``ca.key`` in ``ca_dir``)."""
    out.mkdir(parents=True, exist_ok=True)
    key, csr, crt, ext = (out / f"{name}.{s}" for s in ("key", "csr", "crt", "ext"))
    ext.write_text(extensions)
    steps = [
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", subject],
        [
            "x509", "-req", "-in", str(csr), "-CA", str(ca_dir / "ca.crt"), "-CAkey", str(ca_dir / "ca.key"),
            "-CAcreateserial", "-out", str(crt), "-days", "3", "-extfile", str(ext),
        ],
    ]  # fmt: skip
    for args in steps:
        proc = subprocess.run(["openssl", *args], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args)} failed: {proc.stderr}")
    return crt, key


def write_kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "node",
        "clusters": [{"name": "e2e", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": "node", "user": {"client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [{"name": "node", "context": {"cluster": "e2e", "user": "node"}}],
    }
    path.write_text(json.dumps(config, indent=2))


def containerd_toml(layout: NodeLayout, sandbox_image: str) -> str:
    """containerd's whole configuration: no listener but the socket, nothing outside ``layout``."""
    q = json.dumps  # a TOML basic string is a JSON string
    return f"""version = 2
root = {q(str(layout.containerd_root))}
state = {q(str(layout.containerd_state))}
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
]

[grpc]
  address = {q(str(layout.containerd_socket))}
[ttrpc]
  address = {q(str(layout.containerd_socket) + ".ttrpc")}
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = {q(str(layout.workdir / "containerd" / "opt"))}

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = {q(sandbox_image)}
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = {q(str(layout.cni_conf_dir))}
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = {q(str(layout.runc_root))}
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = {q(str(layout.workdir / "containerd" / "certs.d"))}
"""


def cni_conflist(network: str, bridge: str, subnet: str, gateway: str, layout: NodeLayout) -> dict[str, Any]:
    """A bridge network: pods get addresses from ``subnet`` and reach only the host and each other."""
    return {
        "cniVersion": "0.4.0",
        "name": network,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": False,  # the fixture gives the bridge its address before containerd starts
                "isDefaultGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(layout.cni_data_dir),
                    "ranges": [[{"subnet": subnet, "gateway": gateway, "rangeEnd": ipam_range_end(subnet)}]],
                },
            },
            {"type": "loopback"},
        ],
    }


def ipam_range_end(subnet: str) -> str:
    """The last address IPAM hands to pods: the ``RESERVED`` ones above it stay free."""
    return str(ip_network(subnet)[-1 - RESERVED])


def reserved_address(subnet: str, index: int) -> str:
    """A fixed address IPAM never hands out: ``index`` 0..4 is ``.250``..``.254`` of a /24."""
    if not 0 <= index < 5:
        raise ValueError(f"reserved address index {index}: expected 0..4")
    return str(ip_network(subnet)[-6 + index])


def kubelet_config(
    layout: NodeLayout,
    *,
    node_ip: str,
    port: int,
    healthz_port: int,
    cgroup_root: str,
    serving: tuple[Path, Path],
    taints: list[dict[str, str]],
) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node_ip,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(serving[0]),
        "tlsPrivateKeyFile": str(serving[1]),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(layout.pki / "ca.crt")},
        },
        # Only the apiserver holds a certificate of the test CA; a webhook would need RBAC for it.
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        "failSwapOn": False,
        "resolvConf": str(layout.resolv_conf),
        "clusterDomain": "cluster.local",
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "makeIPTablesUtilChains": False,
        "podLogsDir": str(layout.workdir / "pod-logs"),
        "registerWithTaints": taints,
        "serializeImagePulls": False,
        "syncFrequency": "10s",
        "fileCheckFrequency": "60s",
        "nodeStatusUpdateFrequency": "5s",
        "maxPods": 50,
        "enableServer": True,
        "enableDebuggingHandlers": True,
        "localStorageCapacityIsolation": True,
        "shutdownGracePeriod": "0s",
        "logging": {"format": "text"},
    }


def normalize_image(name: str) -> str:
    """The name the CRI plugin looks up for ``name`` (docker.io expansion, ``:latest`` default)."""
    first, _, rest = name.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        name = f"docker.io/{name}" if rest else f"docker.io/library/{name}"
    if ":" not in name.rsplit("/", 1)[-1] and "@" not in name:
        name += ":latest"
    return name


def archive_refs(archive: Path) -> list[str]:
    """The reference names (``org.opencontainers.image.ref.name``) in an OCI layout archive's index."""
    with tarfile.open(archive) as tar:
        names = [m for m in tar.getmembers() if m.name.removeprefix("./") == "index.json"]
        member = tar.extractfile(names[0]) if names else None
        if member is None:
            raise ValueError(f"{archive} has no index.json: not an OCI image layout archive")
        index = json.load(member)
    return [
        m.get("annotations", {}).get("org.opencontainers.image.ref.name", "")
        for m in index.get("manifests", [])
    ]
