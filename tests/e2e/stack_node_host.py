"""Host state the e2e node changes, each piece recorded so that teardown puts it back.

The bridge and its veths, the kernel settings the kubelet rewrites and the fixed directories it and
containerd create (recorded once per machine, in /run/funcd-e2e-nodes, so that concurrent test runs
restore the state from before the first), the cgroup tree it runs pods in, the network namespaces
made on its bridge (stack_node_netns), the mounts under the node's directory, the nftables tables
that appear while it runs, and TCP relays that let pods reach loopback-only servers through the
bridge's address.

Errors::

    StackError      (stack_procs) a host command failed; the message has its output
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.stack_node_config import NodeLayout
from tests.e2e.stack_node_netns import delete_node_netns
from tests.e2e.stack_procs import StackError, wait_until

# The kernel settings the kubelet sets when protectKernelDefaults is off (cm.setupKernelTunables).
KUBELET_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
CGROUP_FS = Path("/sys/fs/cgroup")
NODES_DIR = Path("/run/funcd-e2e-nodes")
"""Machine-wide record of the running e2e nodes and of the host's state from before the first."""
# Paths no setting moves: the kubelet's device-plugin socket and checkpoint, libcni's result cache,
# containerd's shim sockets. Removed after the last node when they were absent before the first.
FIXED_DIRS = ("/var/lib/kubelet", "/var/lib/cni", "/run/containerd")
CNI_CACHE = Path("/var/lib/cni/results")
SHIM_SOCKETS = Path("/run/containerd/s")
KUBELET_LEFTOVERS = (
    Path("/var/lib/kubelet/device-plugins/kubelet.sock"),
    Path("/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint"),
)


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise StackError(f"`{' '.join(argv)}` exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


# Not changed by the node (no masquerade, no gateway mode, no iptables rules), but recorded and
# checked with the rest so that a change would show.
NETWORK_SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
)


def read_sysctls(names: tuple[str, ...] = KUBELET_SYSCTLS + NETWORK_SYSCTLS) -> dict[str, str]:
    """Current values, keyed by their path under /proc/sys (the ones this kernel has)."""
    paths = {name: Path("/proc/sys") / name for name in names}
    return {name: path.read_text().strip() for name, path in paths.items() if path.exists()}


def restore_sysctls(saved: dict[str, str]) -> None:
    for name, value in saved.items():
        path = Path("/proc/sys") / name
        if path.read_text().strip() != value:
            path.write_text(value + "\n")


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    NODES_DIR.mkdir(parents=True, exist_ok=True)
    with (NODES_DIR / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _owner_alive(path: Path) -> bool:
    try:
        return Path(f"/proc/{int(json.loads(path.read_text())['pid'])}").exists()
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _live_owners() -> list[Path]:
    return [path for path in NODES_DIR.glob("*.owner") if _owner_alive(path)]


def live_nodes() -> list[str]:
    """The bridges of the machine's e2e nodes whose test process runs."""
    with _machine_lock():
        return sorted(path.stem for path in _live_owners())


def register_node(bridge: str, workdir: Path) -> dict[str, str]:
    """Register a node of this machine. The first one records the kernel settings the kubelet changes
    and which of the kubelet's and containerd's fixed directories are absent; a record left by a run
    that crashed is kept (it holds the state from before that run). Returns the recorded settings."""
    with _machine_lock():
        record = NODES_DIR / "machine.json"
        if not record.exists():
            absent = [p for p in FIXED_DIRS if not Path(p).exists()]
            record.write_text(json.dumps({"sysctls": read_sysctls(), "absent": absent}))
        owner = {"pid": os.getpid(), "workdir": str(workdir), "bridge": bridge}
        (NODES_DIR / f"{bridge}.owner").write_text(json.dumps(owner))
        return dict(json.loads(record.read_text())["sysctls"])


def unregister_node(bridge: str) -> None:
    """Unregister a node; the last live one of the machine puts the recorded state back."""
    with _machine_lock():
        (NODES_DIR / f"{bridge}.owner").unlink(missing_ok=True)
        _restore_machine()


def _restore_machine() -> None:
    """With the machine lock held and no live node: write the kernel settings back and remove the
    fixed directories that were absent, once empty of what the kubelet leaves in them."""
    record = NODES_DIR / "machine.json"
    if _live_owners() or not record.exists():
        return
    state = json.loads(record.read_text())
    restore_sysctls(state["sysctls"])
    for directory in map(Path, state["absent"]):
        for leftover in KUBELET_LEFTOVERS:
            if leftover.parent.is_relative_to(directory):
                leftover.unlink(missing_ok=True)
        if directory.is_dir():
            subdirs = sorted((p for p in directory.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
            for path in [*subdirs, directory]:
                with contextlib.suppress(OSError):  # not empty: something else put files there
                    path.rmdir()
    record.unlink()


def kill_and_wait(pids: set[int], timeout: float = 15) -> None:
    """SIGKILL each PID and wait (bounded) until none exists any more."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def gone() -> bool:
        return not any(Path(f"/proc/{pid}").exists() for pid in pids)

    wait_until(gone, f"processes {sorted(pids)} to exit after SIGKILL", timeout)


def remove_runtime_leftovers(workdir: Path) -> None:
    """Files containerd and libcni keep outside the node's directory, for the node's sandboxes and
    containers: shim sockets (left when a shim is killed) and CNI result caches (left when a sandbox
    is never torn down). Both are named after container IDs, found in the node's containerd dirs."""
    layout = NodeLayout(workdir)
    ids: set[str] = set()
    for parent in (
        layout.containerd_state / "io.containerd.runtime.v2.task" / "k8s.io",
        layout.containerd_root / "io.containerd.grpc.v1.cri" / "sandboxes",
        layout.containerd_root / "io.containerd.grpc.v1.cri" / "containers",
    ):
        if parent.is_dir():
            ids.update(p.name for p in parent.iterdir() if p.is_dir())
    for cid in ids:
        # containerd 1.6: the socket of a shim is s/<sha256(socket address/namespace/id)>.
        key = os.path.join(str(layout.containerd_socket), "k8s.io", cid)
        (SHIM_SOCKETS / hashlib.sha256(key.encode()).hexdigest()).unlink(missing_ok=True)
        for path in CNI_CACHE.glob(f"*-{cid}-*") if CNI_CACHE.is_dir() else []:
            path.unlink(missing_ok=True)


def runtime_files() -> set[Path]:
    """The shim sockets and CNI result caches of the machine (to compare before and after a node)."""
    return {p for d in (SHIM_SOCKETS, CNI_CACHE) if d.is_dir() for p in d.iterdir()}


def reap_stale_nodes() -> list[str]:
    """Clean up after nodes whose test process died without teardown (killed, or the machine's
    session ended): their processes, mounts, bridge and cgroups, and the kernel settings when no
    node runs any more. Returns the bridges reaped."""
    reaped = []
    with _machine_lock():
        for path in NODES_DIR.glob("*.owner"):
            if _owner_alive(path):
                continue
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                owner = json.loads(path.read_text())
                workdir, bridge = Path(owner["workdir"]), str(owner["bridge"])
                kill_and_wait({*pids_using(workdir), *cgroup_pids(f"funcd-e2e-{bridge}")})
                unmount_all(workdir)
                remove_runtime_leftovers(workdir)
                delete_bridge(bridge)
                delete_node_netns(bridge)
                remove_cgroup_root(f"funcd-e2e-{bridge}")
                reaped.append(bridge)
            path.unlink(missing_ok=True)
        if reaped:
            _restore_machine()
    return reaped


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def bridge_ports(bridge: str) -> list[str]:
    """Interfaces attached to ``bridge`` (the host ends of the pods' veths)."""
    brif = Path("/sys/class/net", bridge, "brif")
    return sorted(p.name for p in brif.iterdir()) if brif.is_dir() else []


def claim_bridge(prefix: str = "funcd", count: int = 64) -> int:
    """Create the first free bridge ``<prefix><i>`` and return ``i``: nodes of concurrent test runs
    on this machine each get their own (creating a link that exists fails, so the claim is atomic)."""
    for index in range(count):
        proc = run("ip", "link", "add", f"{prefix}{index}", "type", "bridge", check=False)
        if proc.returncode == 0:
            return index
        if "exists" not in proc.stderr:
            raise StackError(f"`ip link add {prefix}{index} type bridge` failed: {proc.stderr.strip()}")
    raise StackError(f"bridges {prefix}0..{prefix}{count - 1} all exist: e2e nodes left behind?")


def create_bridge(name: str, host_cidr: str, claimed: bool = False) -> None:
    """Give a bridge its gateway address and bring it up; unless ``claimed`` (by claim_bridge), create
    it first, which fails if it exists (another node may own it)."""
    if not claimed:
        if link_exists(name):
            raise StackError(f"bridge {name} already exists: another e2e node runs, or one was not torn down")
        run("ip", "link", "add", name, "type", "bridge")
    try:
        run("ip", "addr", "add", host_cidr, "dev", name)
        run("ip", "link", "set", name, "up")
    except BaseException:
        run("ip", "link", "del", name, check=False)
        raise


def delete_bridge(name: str) -> None:
    """The bridge and every veth still attached to it (deleting one end removes the pair)."""
    for port in bridge_ports(name):
        run("ip", "link", "del", port, check=False)
    if link_exists(name):
        run("ip", "link", "del", name)


def nft_tables() -> set[str]:
    """The nftables tables, as "family name" (iptables-nft keeps its rules in such tables too)."""
    proc = run("nft", "-j", "list", "tables")
    found = json.loads(proc.stdout).get("nftables", [])
    return {f"{item['table']['family']} {item['table']['name']}" for item in found if "table" in item}


def delete_nft_tables(tables: set[str]) -> None:
    for table in sorted(tables):
        family, name = table.split(" ", 1)
        run("nft", "delete", "table", family, name, check=False)


def mounts_under(directory: Path) -> list[str]:
    """Mount points at or below ``directory``, deepest first (mountinfo escapes spaces as \\040)."""
    prefix = str(directory.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def unmount_all(directory: Path) -> None:
    for _ in range(3):  # a mount may be stacked on another at the same point
        points = mounts_under(directory)
        if not points:
            return
        for point in points:
            if run("umount", point, check=False).returncode != 0:
                run("umount", "-l", point, check=False)


def cgroup_hierarchies() -> list[Path]:
    """The mounted cgroup hierarchies (v1 controllers, or the single v2 tree)."""
    if (CGROUP_FS / "cgroup.controllers").exists():
        return [CGROUP_FS]
    return sorted(p for p in CGROUP_FS.iterdir() if p.is_dir() and (p / "cgroup.procs").exists())


def create_cgroup_root(name: str) -> None:
    """``/<name>`` in every hierarchy: the kubelet's cgroupRoot must exist before it starts."""
    for hierarchy in cgroup_hierarchies():
        path = hierarchy / name
        path.mkdir(exist_ok=True)
        for knob in ("cpuset.cpus", "cpuset.mems"):  # a v1 cpuset child starts empty
            if (path / knob).exists() and not (path / knob).read_text().strip():
                (path / knob).write_text((hierarchy / knob).read_text())


def cgroup_pids(name: str) -> set[int]:
    pids: set[int] = set()
    for hierarchy in cgroup_hierarchies():
        for procs in (hierarchy / name).rglob("cgroup.procs") if (hierarchy / name).is_dir() else []:
            with contextlib.suppress(OSError):
                pids.update(int(x) for x in procs.read_text().split())
    return pids


def remove_cgroup_root(name: str) -> None:
    """Remove ``/<name>`` and its children, deepest first (each must be empty of processes)."""
    for hierarchy in cgroup_hierarchies():
        root = hierarchy / name
        if not root.is_dir():
            continue
        for path in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(FileNotFoundError):
                path.rmdir()
        with contextlib.suppress(FileNotFoundError):
            root.rmdir()


def cgroup_exists(name: str) -> bool:
    return any((h / name).exists() for h in cgroup_hierarchies())


def pids_using(directory: Path) -> dict[int, str]:
    """Processes whose command line names a path under ``directory`` (shims name the state dir)."""
    prefix, found = str(directory.resolve()), {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            if any(prefix == a or f"{prefix}/" in a or a.endswith(f"={prefix}") for a in args):
                found[int(entry.name)] = " ".join(args).strip()
    return found


@dataclass
class Relay:
    """Accepts TCP connections on ``host:port`` and pipes each to ``127.0.0.1:target``."""

    host: str
    port: int
    target: int
    listener: socket.socket
    conns: list[socket.socket] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed by stop()
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                self.conns += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(src, dst), daemon=True).start()

    def stop(self) -> None:
        self.listener.close()
        with self.lock:
            for conn in self.conns:
                with contextlib.suppress(OSError):
                    conn.close()
            self.conns.clear()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def start_relay(host: str, target: int) -> Relay:
    """A relay on ``host``, on the target's port number when it is free there, else on any port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, target))
    except OSError:
        listener.bind((host, 0))
    listener.listen(64)
    relay = Relay(host, int(listener.getsockname()[1]), target, listener)
    threading.Thread(target=relay.serve, daemon=True, name=f"relay-{relay.address}").start()
    return relay
