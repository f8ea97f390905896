"""The effective settings of one ``funcd run``: built once by cli from context, flags and env; frozen.

Nothing else reads the environment; everything below cli receives this object.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from .dapr_client import SidecarAddress
from .replies import AckPolicy

AppProtocol = Literal["grpc", "http"]
ErrorAck = Literal["retry", "drop"]
ServerKind = Literal["granian", "wsgiref"]

APP_PROTOCOLS: tuple[AppProtocol, ...] = ("grpc", "http")
ERROR_ACKS: tuple[ErrorAck, ...] = ("retry", "drop")
SERVERS: tuple[ServerKind, ...] = ("granian", "wsgiref")
DEFAULT_MAX_BODY = 32 * 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """How one function is served."""

    host: str = "127.0.0.1"
    """Address to listen on (HTTP and the Dapr AppCallback server)."""
    port: int = 8080
    """HTTP port; 0 picks a free one."""
    dapr_port: int = 50051
    """Dapr AppCallback gRPC port (``app_protocol`` grpc); 0 picks a free one."""
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    """Worker processes sharing the ports."""
    threads: int = 4
    """Handler threads per worker process."""
    timeout: float | None = None
    """Per-call timeout in seconds (504 over HTTP, RETRY for deliveries); None for no limit."""
    grace: float = 30.0
    """Seconds in-flight calls get to finish after SIGTERM."""
    server: ServerKind = "granian"
    """``granian`` (default) or ``wsgiref`` (pure-Python fallback, one process)."""
    max_body: int = DEFAULT_MAX_BODY
    """Largest request body or event payload accepted, in bytes (413 / ``on_invalid``)."""
    health_path: str = "/healthz"
    """Liveness path: 200 while the process serves."""
    ready_path: str = "/readyz"
    """Readiness path: 200, or 503 once draining has begun."""
    debug: bool = False
    """Debug logs, and exception details and tracebacks in error responses."""
    access_log: bool = False
    """One JSON line per request or delivery (``functions_framework.access`` logger)."""
    app_protocol: AppProtocol = "grpc"
    """How daprd calls the function: ``grpc`` (AppCallback on ``dapr_port``) or ``http`` (on ``port``)."""
    on_error: ErrorAck = "retry"
    """Ack when an async handler raises anything but Retry, Drop or an OutputError."""
    on_invalid: ErrorAck = "drop"
    """Ack for an event that does not decode or exceeds ``max_body``."""
    app_token: str | None = None
    """When set, daprd's calls must carry this ``dapr-api-token`` (``APP_API_TOKEN``)."""
    dapr_address: SidecarAddress | None = None
    """Where the Dapr sidecar is (gRPC API, optional HTTP API, token); None: no sidecar configured."""
    local_dapr: bool = True
    """Start a local daprd when the function uses Dapr and no sidecar is configured."""

    @property
    def ack_policy(self) -> AckPolicy:
        return AckPolicy(
            on_error="DROP" if self.on_error == "drop" else "RETRY",
            on_invalid="RETRY" if self.on_invalid == "retry" else "DROP",
        )
