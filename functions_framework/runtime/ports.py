"""One port, one function: check, in the supervisor and before any worker starts, that nobody holds
the ports funcd is about to serve on.

Workers bind their ports themselves with SO_REUSEPORT, so that they share them. SO_REUSEPORT would
also let a second ``funcd run`` join a port that another funcd serves, and the two would split the
traffic. The probe here binds the port *without* SO_REUSEPORT: Linux then refuses the bind when any
socket holds the port, whether that socket set SO_REUSEPORT or not (another funcd's workers, or any
other server). It keeps SO_REUSEADDR, so connections of a previous server lingering in TIME_WAIT do
not count as "in use". The probe closes at once; the workers bind right after.

Every port a function serves on is described by a ``PortClaim`` (what serves there and which option
moves it), so a later port (metrics, health) is checked by adding a claim.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import PortInUseError

__all__ = ["PortClaim", "check_ports", "serving_claims"]


@dataclass(frozen=True)
class PortClaim:
    """One port funcd is about to serve on."""

    port: int
    """The port; 0 (a free port picked by funcd) is never checked."""
    what: str
    """What serves there, for the message: ``HTTP trigger``, ``Dapr app callbacks (gRPC)``."""
    option: str
    """The command-line option that moves it: ``--port``, ``--dapr-port``."""


def serving_claims(
    has_http: bool, has_inputs: bool, app_protocol: str, port: int, dapr_port: int
) -> list[PortClaim]:
    """The claims of ``funcd run``: the HTTP port always (health paths answer there even without an
    HTTP trigger), and the AppCallback port when daprd calls the function over gRPC."""
    if has_http:
        what = "HTTP trigger"
    elif has_inputs and app_protocol == "http":
        what = "Dapr app callbacks over HTTP, and health paths"
    else:
        what = "health paths"
    claims = [PortClaim(port, what, "--port")]
    if has_inputs and app_protocol == "grpc":
        claims.append(PortClaim(dapr_port, "Dapr app callbacks (gRPC)", "--dapr-port"))
    return claims


def check_ports(host: str, claims: Sequence[PortClaim]) -> None:
    """Raise PortInUseError, with one line naming the port, unless every claimed port can be bound."""
    seen: dict[int, PortClaim] = {}
    for claim in claims:
        if claim.port == 0:
            continue
        other = seen.get(claim.port)
        if other is not None:
            raise PortInUseError(
                f"port {claim.port} on {host} is asked for twice: by the {other.what} ({other.option}) "
                f"and by the {claim.what} ({claim.option}); give each its own port"
            )
        seen[claim.port] = claim
        problem = _probe(host, claim.port)
        if problem is not None:
            raise PortInUseError(
                f"port {claim.port} on {host} {problem} ({claim.what}); choose another with {claim.option}"
            )


def _probe(host: str, port: int) -> str | None:
    """None when ``host:port`` can be bound by a socket without SO_REUSEPORT, else what is wrong."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot be bound: the address does not resolve ({exc.strerror})"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "is in use by another process"
            if exc.errno == errno.EACCES:
                return "cannot be bound: permission denied (ports below 1024 need privileges)"
            if exc.errno == errno.EADDRNOTAVAIL:
                return "cannot be bound: the address is not one of this machine's"
            return f"cannot be bound: {exc.strerror or exc}"
    return None
