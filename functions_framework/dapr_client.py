"""Where the Dapr sidecar is, and the calls of its gRPC API behind ``context.send`` and ``context.state``.

funcd needs one address: the sidecar's gRPC API (``--dapr-address``, or Dapr's own
``DAPR_GRPC_ENDPOINT`` / ``DAPR_RUNTIME_HOST:DAPR_GRPC_PORT``). The sidecar's HTTP API
(``--dapr-http-address``, or ``DAPR_HTTP_ENDPOINT`` / ``DAPR_HTTP_PORT``) is optional: funcd reads
daprd's app health settings there when it drains, and hands it to the Dapr SDK for code that builds
its own ``DaprClient``. When the gRPC address comes from ``--dapr-address``, the HTTP address is only
taken from ``--dapr-http-address``, never from the environment, so that a flag and a stray variable
cannot name two different sidecars.

``DaprApi`` calls the sidecar through the official generated stubs (``dapr.proto``), not through the
SDK's ``DaprClient``: that client's constructor waits for the sidecar's *HTTP* health endpoint
(``DAPR_HTTP_PORT``, 3500 by default) whatever gRPC address it is given, and prints every failed
probe to stdout. ``DaprApi.connect`` waits for the gRPC channel itself to be ready instead; daprd
opens its gRPC API only once its components are loaded (dapr 1.15 ``pkg/runtime/runtime.go``,
``initRuntime``), so a ready channel means outputs and state stores can be used.

``configure_sdk`` sets the SDK's settings in code, per worker process (never through
``os.environ``), so that a function's own ``DaprClient()`` finds the same sidecar; it also routes
the SDK's health-check messages to logging instead of stdout.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import SidecarError, UsageError

if TYPE_CHECKING:
    import grpc

__all__ = [
    "DaprApi",
    "SidecarAddress",
    "SidecarUnavailable",
    "configure_sdk",
    "outbound_headers",
    "sidecar_address",
]

outbound_headers: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "funcd_outbound_headers", default=None
)
"""gRPC headers plugins added to the call in progress (``OutboundCall.headers``)."""

log = logging.getLogger("functions_framework.dapr_client")

DEFAULT_TIMEOUT = 60.0
DEFAULT_GRPC = "127.0.0.1:50001"
"""Dapr's default gRPC API address, used when nothing names a sidecar."""


class SidecarUnavailable(SidecarError):
    """The sidecar's gRPC API did not become ready in time."""


@dataclass(frozen=True)
class SidecarAddress:
    """How to reach the Dapr sidecar."""

    grpc: str
    """The gRPC API, ``host:port``: where context.send and context.state go."""
    http: str | None = None
    """The HTTP API, ``http://host:port``, when known: daprd's app health settings are read there."""
    api_token: str | None = None
    """Sent as ``dapr-api-token`` with every call when set (daprd's ``DAPR_API_TOKEN``)."""
    timeout: float = DEFAULT_TIMEOUT
    """Seconds the first call waits for the sidecar's gRPC API to be ready."""

    def describe(self) -> str:
        return f"{self.grpc} (gRPC)" + (f" and {self.http} (HTTP)" if self.http else "")


def _grpc_target(text: str, where: str) -> str:
    target = text.strip()
    for prefix in ("dns:///", "dns://", "dns:", "http://"):
        target = target.removeprefix(prefix)
    if target.startswith(("https://", "unix:")) or "?" in target:
        raise UsageError(
            f"{where}: expected host:port of the sidecar's plain gRPC API, got {text!r} (TLS, unix sockets "
            "and endpoint options are not supported)"
        )
    if ":" not in target.rsplit("]", 1)[-1]:
        raise UsageError(f"{where}: expected host:port, got {text!r}")
    return target.rstrip("/")


def _http_url(text: str, where: str) -> str:
    url = text.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        url = f"http://{url}"
    if ":" not in url.split("//", 1)[1]:
        raise UsageError(f"{where}: expected host:port or http://host:port, got {text!r}")
    return url


def sidecar_address(
    grpc_flag: str | None, http_flag: str | None, env: Mapping[str, str]
) -> SidecarAddress | None:
    """The sidecar from the flags, else from Dapr's environment variables; None when neither names one.

    ``env`` is passed in (cli reads the environment; this module does not)."""
    token = env.get("DAPR_API_TOKEN") or None
    try:
        timeout = float(env.get("DAPR_HEALTH_TIMEOUT") or DEFAULT_TIMEOUT)
    except ValueError:
        raise UsageError(
            f"DAPR_HEALTH_TIMEOUT: expected seconds, got {env['DAPR_HEALTH_TIMEOUT']!r}"
        ) from None
    host = env.get("DAPR_RUNTIME_HOST") or env.get("DAPR_HOST_IP") or "127.0.0.1"
    if grpc_flag:
        http = _http_url(http_flag, "--dapr-http-address") if http_flag else None
        return SidecarAddress(_grpc_target(grpc_flag, "--dapr-address"), http, token, timeout)
    if http_flag:
        raise UsageError("--dapr-http-address: give --dapr-address (the gRPC API) with it")
    if env.get("DAPR_GRPC_ENDPOINT"):
        grpc = _grpc_target(env["DAPR_GRPC_ENDPOINT"], "DAPR_GRPC_ENDPOINT")
    elif env.get("DAPR_GRPC_PORT"):
        grpc = f"{host}:{env['DAPR_GRPC_PORT']}"
    else:
        return None
    http = None
    if env.get("DAPR_HTTP_ENDPOINT"):
        http = _http_url(env["DAPR_HTTP_ENDPOINT"], "DAPR_HTTP_ENDPOINT")
    elif env.get("DAPR_HTTP_PORT"):
        http = f"http://{host}:{env['DAPR_HTTP_PORT']}"
    return SidecarAddress(grpc, http, token, timeout)


class DaprApi:
    """The sidecar's gRPC API for one worker process: one channel, shared by every thread."""

    def __init__(self, address: SidecarAddress, max_message: int = 0) -> None:
        import grpc
        from dapr.proto import api_service_v1

        options: list[tuple[str, Any]] = [
            ("grpc.initial_reconnect_backoff_ms", 100),  # notice a sidecar that starts late quickly
            ("grpc.max_reconnect_backoff_ms", 1000),
        ]
        if max_message:
            options += [
                ("grpc.max_send_message_length", max_message),
                ("grpc.max_receive_message_length", max_message),
            ]
        self.address = address
        self._channel: grpc.Channel = grpc.insecure_channel(address.grpc, options=options)
        self._metadata = (("dapr-api-token", address.api_token),) if address.api_token else ()
        self.stub = api_service_v1.DaprStub(self._channel)  # type: ignore[no-untyped-call]

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the gRPC channel is connected; SidecarUnavailable after ``timeout`` seconds."""
        import grpc

        wait = self.address.timeout if timeout is None else timeout
        try:
            grpc.channel_ready_future(self._channel).result(timeout=wait)
        except grpc.FutureTimeoutError:
            raise SidecarUnavailable(
                f"the Dapr sidecar's gRPC API at {self.address.grpc} did not answer within {wait:g}s"
            ) from None

    def call(self, method: str, request: Any) -> Any:
        """Call ``method`` of the Dapr service with the API token and the outbound headers; raises
        grpc.RpcError."""
        headers = outbound_headers.get()
        metadata = (*self._metadata, *headers.items()) if headers else self._metadata
        return getattr(self.stub, method)(request, metadata=metadata)

    def publish(
        self, pubsub: str, topic: str, data: bytes, content_type: str, metadata: Mapping[str, str]
    ) -> None:
        from dapr.proto.runtime.v1 import pubsub_pb2

        request = pubsub_pb2.PublishEventRequest(
            pubsub_name=pubsub,
            topic=topic,
            data=data,
            data_content_type=content_type,
            metadata=dict(metadata),
        )
        self.call("PublishEvent", request)

    def invoke_binding(self, name: str, operation: str, data: bytes, metadata: Mapping[str, str]) -> bytes:
        from dapr.proto.runtime.v1 import binding_pb2

        request = binding_pb2.InvokeBindingRequest(
            name=name, operation=operation, data=data, metadata=dict(metadata)
        )
        return bytes(self.call("InvokeBinding", request).data)

    def get_state(self, store: str, key: str) -> bytes:
        from dapr.proto.runtime.v1 import state_pb2

        return bytes(self.call("GetState", state_pb2.GetStateRequest(store_name=store, key=key)).data)

    def save_state(self, store: str, key: str, value: bytes) -> None:
        from dapr.proto import common_v1
        from dapr.proto.runtime.v1 import state_pb2

        item = common_v1.StateItem(key=key, value=value)
        self.call("SaveState", state_pb2.SaveStateRequest(store_name=store, states=[item]))

    def delete_state(self, store: str, key: str) -> None:
        from dapr.proto.runtime.v1 import state_pb2

        self.call("DeleteState", state_pb2.DeleteStateRequest(store_name=store, key=key))

    def transaction(self, store: str, upserts: Mapping[str, bytes], deletes: list[str]) -> None:
        from dapr.proto import common_v1
        from dapr.proto.runtime.v1 import state_pb2

        operations = [
            state_pb2.TransactionalStateOperation(
                operationType="upsert", request=common_v1.StateItem(key=key, value=value)
            )
            for key, value in upserts.items()
        ]
        operations += [
            state_pb2.TransactionalStateOperation(
                operationType="delete", request=common_v1.StateItem(key=key)
            )
            for key in deletes
        ]
        request = state_pb2.ExecuteStateTransactionRequest(storeName=store, operations=operations)
        self.call("ExecuteStateTransaction", request)

    def close(self) -> None:
        self._channel.close()


def configure_sdk(address: SidecarAddress) -> None:
    """Point the Dapr SDK's settings at ``address``, in code, for a function's own ``DaprClient()``.

    The SDK reads an attribute set on ``dapr.conf.settings`` before its environment variable. Its
    ``DaprClient()`` still waits for the HTTP API first: with no HTTP address known, it waits on its
    default (127.0.0.1:3500). What its health check prints goes to logging (when the SDK's client
    module is already imported, as it is when the function's module imports it)."""
    from dapr.conf import settings

    settings.DAPR_GRPC_ENDPOINT = address.grpc  # type: ignore[attr-defined]
    if address.http:
        settings.DAPR_HTTP_ENDPOINT = address.http  # type: ignore[attr-defined]
    if address.api_token:
        settings.DAPR_API_TOKEN = address.api_token  # type: ignore[attr-defined]
    settings.DAPR_HEALTH_TIMEOUT = address.timeout  # type: ignore[attr-defined]
    health = sys.modules.get("dapr.clients.health")
    if health is not None:
        health.print = _sdk_message  # type: ignore[attr-defined]


def _sdk_message(*args: Any, **kwargs: Any) -> None:
    """Stands in for ``print`` in the SDK's health module: one log record instead of a bare line."""
    log.warning("Dapr SDK: %s", " ".join(str(a) for a in args))
