"""Every stack process listens on 127.0.0.1 only, and none holds a non-loopback UDP socket; KEDA's
metrics adapter (whose /metrics listener binds every interface) listens only inside its own network
namespace on the node's bridge."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any

from tests.e2e.stack_control_plane import ControlPlane
from tests.e2e.stack_jaeger import Jaeger
from tests.e2e.stack_keda_adapter import METRICS_PORT, SECURE_PORT, KedaMetricsAdapter
from tests.e2e.stack_kube import KedaOperator, KubeAPIServer
from tests.e2e.stack_redis import RedisServer


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _decode(hex_addr: str) -> tuple[str, int]:
    host, port = hex_addr.split(":")
    raw = bytes.fromhex(host)
    # /proc/net prints each 32-bit word of the address in host (little-endian) order.
    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(raw)), int(port, 16)


def _sockets(pid: int, net: Path = Path("/proc/net")) -> list[tuple[str, str, int]]:
    """(protocol, address, port) of the listening TCP and bound UDP sockets of ``pid`` in the network
    namespace whose tables are in ``net`` (this process's own by default)."""
    inodes, found = _socket_inodes(pid), []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        for line in (net / proto).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            listening = state == "0A" if proto.startswith("tcp") else True
            if inode in inodes and listening:
                found.append((proto, *_decode(local)))
    return found


def test_stack_listens_on_loopback_only(
    redis_server: RedisServer,
    daprd: Any,
    kube_apiserver: KubeAPIServer,
    keda_operator: KedaOperator,
    jaeger: Jaeger,
    control_plane: ControlPlane,
) -> None:
    sidecar = daprd()
    pids = {
        "redis-server": redis_server.pid,
        "daprd": sidecar.pid,
        "keda-operator": keda_operator.pid,
        "jaeger": jaeger.pid,
        **{p.name: p.pid for p in kube_apiserver.group.procs},
        **{p.name: p.pid for p in control_plane.group.procs},
    }
    exposed = {}
    for name, pid in pids.items():
        sockets = _sockets(pid)
        assert sockets or name == "keda-operator", f"{name} has no listening socket?"
        bad = [s for s in sockets if not ipaddress.ip_address(s[1]).is_loopback]
        if bad:
            exposed[name] = bad
    assert not exposed, f"listening beyond loopback: {exposed}"


def test_keda_adapter_listens_only_inside_its_network_namespace(
    keda_metrics_adapter: KedaMetricsAdapter,
) -> None:
    adapter = keda_metrics_adapter
    # The PID is the adapter itself (nsenter execs it), not a wrapper that would outlive its stop.
    assert Path(os.readlink(f"/proc/{adapter.pid}/exe")).name == "keda-adapter"
    netns = os.stat(adapter.netns.path).st_ino
    assert os.stat(f"/proc/{adapter.pid}/ns/net").st_ino == netns
    assert os.stat("/proc/self/ns/net").st_ino != netns
    assert _sockets(adapter.pid) == [], "the adapter listens in the host's network namespace"
    inside = {(address, port) for _, address, port in _sockets(adapter.pid, Path(f"/proc/{adapter.pid}/net"))}
    assert (adapter.netns.address, SECURE_PORT) in inside, inside
    assert inside <= {
        (adapter.netns.address, SECURE_PORT),
        ("::", METRICS_PORT),
        ("0.0.0.0", METRICS_PORT),
    }, inside
