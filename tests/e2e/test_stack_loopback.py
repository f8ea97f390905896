"""Every stack process listens on 127.0.0.1 only, and none holds a non-loopback UDP socket."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any

from tests.e2e.stack_control_plane import ControlPlane
from tests.e2e.stack_jaeger import Jaeger
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


def _sockets(pid: int) -> list[tuple[str, str, int]]:
    """(protocol, address, port) of the listening TCP and bound UDP sockets of ``pid``."""
    inodes, found = _socket_inodes(pid), []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/net/{proto}").read_text().splitlines()[1:]:
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
