"""A protocol fake of the Dapr sidecar's API: the part ``context.send()`` and ``context.state()`` use.

It is a real gRPC server implementing the official ``DaprServicer`` from ``dapr.proto`` (PublishEvent,
InvokeBinding, GetState, SaveState, DeleteState, ExecuteStateTransaction; every other method answers
UNIMPLEMENTED, as the generated base class does), plus a tiny HTTP server answering
``GET /v1.0/healthz`` and ``/v1.0/healthz/outbound``, which the SDK's ``DaprClient()`` polls before it
returns. Both listen on 127.0.0.1, on ephemeral ports.

Use the ``dapr_api`` fixture by naming this module in ``pytest_plugins`` (in a test module, or once in
``tests/conftest.py``); import the class only for annotations, so pytest can assertion-rewrite the
plugin::

    from typing import TYPE_CHECKING
    if TYPE_CHECKING:
        from tests.fakes.dapr_api import DaprApiFake

    pytest_plugins = ["tests.fakes.dapr_api"]

    def test_publish(dapr_api: DaprApiFake) -> None:
        DaprOutputs(ctx, address=dapr_api.address).send({"a": 1}, output="orders")
        assert dapr_api.published[0].data == b'{"a": 1}'

Outside pytest: ``with DaprApiFake(token=None) as fake: ...`` (or ``start()``/``stop()``). Give
``grpc_port`` to listen on a chosen port (a sidecar that starts after its app).

The fixture also points the SDK's environment (``DAPR_GRPC_ENDPOINT``, ``DAPR_HTTP_ENDPOINT``) at the fake
and unsets ``DAPR_API_TOKEN``, so ``DaprClient()`` with no address finds it too.

What it records, in call order: ``published`` (``Published``), ``invoked`` (``BindingCall``), ``calls``
(every gRPC method name with its ``dapr-api-token``), ``health_checks`` (every GET of a health path,
as the SDK's ``DaprClient()`` makes when it is built), and ``states`` (store name -> key -> bytes).
Set ``token`` to require a ``dapr-api-token`` (mismatches get UNAUTHENTICATED),
``binding_responses[name]`` to set what a binding answers, ``fail_next(method, code)`` to make the
next call(s) of a method fail, and ``healthy = False`` to make the health endpoint answer 503. State
keys holding ``||`` are refused with INVALID_ARGUMENT, as daprd refuses them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
from dapr.proto.runtime.v1 import binding_pb2, dapr_pb2_grpc, state_pb2
from google.protobuf import empty_pb2

__all__ = ["BindingCall", "Call", "DaprApiFake", "Published", "dapr_api"]

HEALTH_PATHS = ("/v1.0/healthz", "/v1.0/healthz/outbound")
KEY_SEPARATOR = "||"
"""daprd refuses state keys holding it (INVALID_ARGUMENT), as this fake does."""


@dataclass(frozen=True)
class Published:
    """One PublishEvent request."""

    pubsub_name: str
    topic: str
    data: bytes
    content_type: str
    metadata: dict[str, str]
    api_token: str | None


@dataclass(frozen=True)
class BindingCall:
    """One InvokeBinding request."""

    name: str
    operation: str
    data: bytes
    metadata: dict[str, str]
    api_token: str | None


@dataclass(frozen=True)
class Call:
    """Any gRPC call that reached an implemented method."""

    method: str
    api_token: str | None
    grpc_metadata: dict[str, str] = field(default_factory=dict)


class DaprApiFake(dapr_pb2_grpc.DaprServicer):
    """In-memory Dapr API on a real gRPC server. ``start()`` it, ``stop()`` it (or use ``dapr_api``)."""

    def __init__(self, token: str | None = None, grpc_port: int = 0) -> None:
        self.token = token
        """When set, every gRPC call must carry this ``dapr-api-token``."""
        self.healthy = True
        """Whether the HTTP health endpoints answer 204 (else 503)."""
        self.published: list[Published] = []
        self.invoked: list[BindingCall] = []
        self.calls: list[Call] = []
        self.health_checks = 0
        self.states: dict[str, dict[str, bytes]] = {}
        self.binding_responses: dict[str, tuple[bytes, Mapping[str, str]]] = {}
        """Binding name -> (data, metadata) it answers; default (b"", {})."""
        self._failures: dict[str, list[tuple[grpc.StatusCode, str]]] = {}
        self._lock = threading.Lock()
        self._grpc: grpc.Server | None = None
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self.grpc_port = grpc_port
        """The gRPC port: the one given, else an ephemeral one picked at start."""
        self.http_port = 0

    # ------------------------------------------------------------ lifecycle

    @property
    def address(self) -> str:
        """The gRPC address, as ``DaprClient(address=...)`` takes it."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        """The HTTP endpoint, as ``DAPR_HTTP_ENDPOINT`` takes it."""
        return f"http://127.0.0.1:{self.http_port}"

    def env(self) -> dict[str, str]:
        """The SDK settings that point a ``DaprClient()`` with no address at this fake."""
        return {"DAPR_GRPC_ENDPOINT": self.address, "DAPR_HTTP_ENDPOINT": self.http_endpoint}

    def start(self) -> DaprApiFake:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        dapr_pb2_grpc.add_DaprServicer_to_server(self, server)  # type: ignore[no-untyped-call]
        self.grpc_port = server.add_insecure_port(f"127.0.0.1:{self.grpc_port}")
        server.start()
        self._grpc = server
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _health_handler(self))
        self.http_port = self._http.server_address[1]
        self._http_thread = threading.Thread(
            target=self._http.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="dapr-fake-http",
            daemon=True,
        )
        self._http_thread.start()
        return self

    def stop(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=None).wait()
            self._grpc = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._http_thread is not None:
            self._http_thread.join(timeout=5)
            self._http_thread = None

    def __enter__(self) -> DaprApiFake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ test controls

    def fail_next(
        self,
        method: str,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        details: str = "",
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls of gRPC ``method`` (e.g. ``"PublishEvent"``) fail with ``code``."""
        if not hasattr(dapr_pb2_grpc.DaprServicer, method):
            raise ValueError(f"fail_next: {method!r} is not a method of the Dapr API")
        message = details or f"injected {code.name} failure of {method}"
        with self._lock:
            self._failures.setdefault(method, []).extend([(code, message)] * times)

    # ------------------------------------------------------------ gRPC methods

    def _enter(self, method: str, context: grpc.ServicerContext) -> str | None:
        """Record the call; abort it on a token mismatch or an injected failure."""
        md = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        token = md.get("dapr-api-token")
        with self._lock:
            self.calls.append(Call(method, token, md))
        if self.token is not None and token != self.token:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "authentication error: api token mismatch")
        with self._lock:
            failures = self._failures.get(method)
            failure = failures.pop(0) if failures else None
        if failure is not None:
            context.abort(*failure)
        return token

    def PublishEvent(self, request: Any, context: grpc.ServicerContext) -> empty_pb2.Empty:
        token = self._enter("PublishEvent", context)
        with self._lock:
            self.published.append(
                Published(
                    pubsub_name=request.pubsub_name,
                    topic=request.topic,
                    data=bytes(request.data),
                    content_type=request.data_content_type,
                    metadata=dict(request.metadata),
                    api_token=token,
                )
            )
        return empty_pb2.Empty()

    def InvokeBinding(self, request: Any, context: grpc.ServicerContext) -> Any:
        token = self._enter("InvokeBinding", context)
        with self._lock:
            self.invoked.append(
                BindingCall(
                    name=request.name,
                    operation=request.operation,
                    data=bytes(request.data),
                    metadata=dict(request.metadata),
                    api_token=token,
                )
            )
            data, metadata = self.binding_responses.get(request.name, (b"", {}))
        return binding_pb2.InvokeBindingResponse(data=data, metadata=dict(metadata))

    @staticmethod
    def _check_key(key: str, context: grpc.ServicerContext) -> None:
        """Refuse a key as daprd does: the separator of its own key scheme may not appear in it."""
        if KEY_SEPARATOR in key:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input key/keyPrefix '{key}' can't contain '{KEY_SEPARATOR}'",
            )

    def GetState(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("GetState", context)
        self._check_key(request.key, context)
        with self._lock:
            data = self.states.get(request.store_name, {}).get(request.key, b"")
        # Dapr answers a missing key with empty data and no error.
        return state_pb2.GetStateResponse(data=data, etag="1" if data else "")

    def SaveState(self, request: Any, context: grpc.ServicerContext) -> empty_pb2.Empty:
        self._enter("SaveState", context)
        for item in request.states:
            self._check_key(item.key, context)
        with self._lock:
            store = self.states.setdefault(request.store_name, {})
            for item in request.states:
                store[item.key] = bytes(item.value)
        return empty_pb2.Empty()

    def DeleteState(self, request: Any, context: grpc.ServicerContext) -> empty_pb2.Empty:
        self._enter("DeleteState", context)
        self._check_key(request.key, context)
        with self._lock:
            self.states.get(request.store_name, {}).pop(request.key, None)
        return empty_pb2.Empty()

    def ExecuteStateTransaction(self, request: Any, context: grpc.ServicerContext) -> empty_pb2.Empty:
        self._enter("ExecuteStateTransaction", context)
        for op in request.operations:
            if op.operationType not in ("upsert", "delete"):
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"unknown operation type {op.operationType!r}"
                )
            self._check_key(op.request.key, context)
        with self._lock:  # all or nothing
            store = self.states.setdefault(request.storeName, {})
            for op in request.operations:
                if op.operationType == "upsert":
                    store[op.request.key] = bytes(op.request.value)
                else:
                    store.pop(op.request.key, None)
        return empty_pb2.Empty()


def _health_handler(fake: DaprApiFake) -> type[BaseHTTPRequestHandler]:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] not in HEALTH_PATHS:
                self.send_response(404)
            else:
                with fake._lock:
                    fake.health_checks += 1
                self.send_response(204 if fake.healthy else 503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Health


@pytest.fixture
def dapr_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[DaprApiFake]:
    """A started DaprApiFake; the SDK's env settings point at it and ``DAPR_API_TOKEN`` is unset."""
    fake = DaprApiFake().start()
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DAPR_API_TOKEN", raising=False)
    try:
        yield fake
    finally:
        fake.stop()
