"""A network namespace on the e2e node's bridge, wired like a pod's, for a host process that must not
listen on the host's interfaces (a server whose listener has no address flag).

The namespace ``funcd-e2e-<bridge>-<name>`` gets one veth pair: ``eth0`` inside, with a fixed address
of the node's subnet that host-local IPAM never hands out (``reserved_address``), and the host end
attached to the bridge. Loopback is up; there is no default route, so from inside the host is
reachable only at ``node.host_ip`` (offer loopback servers there with ``node.expose``). Processes run
in it through ``argv`` (``nsenter`` execs the command: the PID started is the command's own).

Errors::

    StackError      (stack_procs) an ``ip`` command failed, or deletion left the namespace or veth
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from ipaddress import ip_network
from pathlib import Path

from tests.e2e.stack_node_config import reserved_address
from tests.e2e.stack_procs import StackError

NETNS_DIR = Path("/run/netns")


def ip(*args: str, check: bool = True) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise StackError(f"`ip {' '.join(args)}` exited {proc.returncode}: {proc.stderr.strip()}")


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


@dataclass(frozen=True)
class NodeNetns:
    """A pod-like network namespace on a node's bridge."""

    name: str
    """The namespace's name (``ip netns``), ``funcd-e2e-<bridge>-<suffix>``."""
    address: str
    """``eth0``'s address inside it (on the node's pod subnet)."""
    veth: str
    """The host end of the veth pair, attached to the bridge."""

    @property
    def path(self) -> Path:
        return NETNS_DIR / self.name

    def argv(self, command: list[str]) -> list[str]:
        """``command`` run inside the namespace; ``nsenter`` execs it (the PID stays the command's)."""
        return ["nsenter", f"--net={self.path}", "--", *command]

    def delete(self) -> None:
        """Delete the veth pair and the namespace; raise if either is still there."""
        ip("link", "del", self.veth, check=False)
        if self.path.exists():
            ip("netns", "del", self.name, check=False)
        left = [
            what
            for what, there in ((self.veth, link_exists(self.veth)), (self.name, self.path.exists()))
            if there
        ]
        if left:
            raise StackError(f"netns {self.name}: {left} still exist after deletion")


def netns_prefix(bridge: str) -> str:
    return f"funcd-e2e-{bridge}-"


def node_netns(bridge: str) -> list[str]:
    """The namespaces made for the node on ``bridge`` (to check for and reap leftovers)."""
    return sorted(p.name for p in NETNS_DIR.glob(f"{netns_prefix(bridge)}*")) if NETNS_DIR.is_dir() else []


def delete_node_netns(bridge: str) -> None:
    for name in node_netns(bridge):
        ip("netns", "del", name, check=False)


def create_netns(bridge: str, pod_subnet: str, suffix: str, index: int) -> NodeNetns:
    """A namespace on ``bridge`` with the subnet's ``index``-th reserved address (see
    ``reserved_address``). ``suffix`` names it; names are short (a veth name has 15 characters)."""
    prefix = ip_network(pod_subnet).prefixlen
    netns = NodeNetns(
        f"{netns_prefix(bridge)}{suffix}", reserved_address(pod_subnet, index), f"v{bridge}r{index}"
    )
    if len(netns.veth) > 15:
        raise ValueError(f"veth name {netns.veth!r} is longer than 15 characters")
    ip("netns", "add", netns.name)  # fails if it exists: another fixture owns it
    try:
        ip("link", "add", netns.veth, "type", "veth", "peer", "name", "eth0", "netns", netns.name)
        ip("link", "set", netns.veth, "master", bridge)
        ip("link", "set", netns.veth, "up")
        ip("-n", netns.name, "addr", "add", f"{netns.address}/{prefix}", "dev", "eth0")
        ip("-n", netns.name, "link", "set", "eth0", "up")
        ip("-n", netns.name, "link", "set", "lo", "up")
    except BaseException:
        netns.delete()
        raise
    return netns
