"""Dapr-backed ``context.send()`` and ``context.state()``.

``DaprOutputs`` implements the ``Outputs`` protocol of ``runtime_context`` on the sidecar's gRPC API
(``dapr_client.DaprApi``, the official ``dapr.proto`` stubs). Its in-memory twin for tests is
``testing.RecordingOutputs``.

The connection is made on first use, so a function that never sends never waits for a sidecar. The
first call waits until the sidecar's gRPC API is ready (at most ``SidecarAddress.timeout`` seconds,
60 by default); a call that finds no sidecar in that time raises OutputError, and the next call tries
again. One channel is shared by every thread and closed by ``close()``. This module reads no
environment variable: the address is passed in (``SidecarAddress``, or ``"host:port"``; ``None``
means Dapr's default, 127.0.0.1:50001). ``dapr-api-token`` is sent when the address carries a token.

``send(data, output=None, metadata=None)`` goes to ``function.outputs[output]``, or to every output in
order when ``output`` is ``None``; the first failure raises and later outputs are not tried. Per
output it returns:

* pub/sub (``component_type`` ``pubsub.*``): ``publish_event`` to ``component.topic``; returns ``None``;
* binding: ``invoke_binding`` with ``component.operation`` (``create`` when empty); returns the
  binding's response data as ``bytes`` (``b""`` when the binding answers nothing), undecoded.

Data is serialized once: ``bytes``/``bytearray`` as is (``application/octet-stream``), ``str`` as UTF-8
(``text/plain``), anything else as JSON (``application/json``). The content type goes with pub/sub
messages; the binding API has no content-type field. Metadata is the component's metadata updated
with the call's ``metadata``.

``state(name)`` returns a ``DaprState`` for ``function.states[name]`` with the methods of
``testing.MemoryState``. Values are saved as JSON unless they are bytes; ``get`` decodes JSON and
returns bytes that are not JSON as they are, and returns ``default`` for a missing key (Dapr answers a
missing key with empty data, so an empty stored value reads as missing too).

Every failure raises ``OutputError`` (see ``errors``) naming the output or store, the component, the
topic/operation or key, and the underlying error, which is chained as ``__cause__``. It is
``temporary`` when trying again may work (no sidecar yet, UNAVAILABLE, DEADLINE_EXCEEDED, ...).

Before each call, the plugins' ``outbound`` hook may add Dapr metadata (publish and binding calls)
and gRPC headers (every call), e.g. ``traceparent`` so that daprd continues the trace; once the call
ended, ``call.done(error)`` runs what the plugins put in ``call.on_done`` (e.g. ending a client span).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .dapr_client import DEFAULT_GRPC, DaprApi, SidecarAddress, SidecarUnavailable, outbound_headers
from .errors import OutputError
from .invocation import current_invocation
from .plugins import OutboundCall

if TYPE_CHECKING:
    from .model import Component, FunctionContext, StateStore

TEMPORARY_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"})

__all__ = ["DaprOutputs", "DaprState", "encode", "encode_state"]

JSON = "application/json"
TEXT = "text/plain"
BINARY = "application/octet-stream"
DEFAULT_OPERATION = "create"


def encode(data: Any, where: str) -> tuple[bytes, str]:
    """``data`` as (bytes, content type). ``where`` names the call in the error."""
    if isinstance(data, (bytes, bytearray)):
        return bytes(data), BINARY
    if isinstance(data, str):
        return data.encode("utf-8"), TEXT
    try:
        return json.dumps(data, allow_nan=False).encode("utf-8"), JSON
    except (TypeError, ValueError) as exc:
        raise OutputError(
            f"{where}: expected bytes, str or a JSON-serializable value, got {type(data).__name__} ({exc})"
        ) from exc


def encode_state(value: Any, where: str) -> bytes:
    """A state value as stored: bytes as is, anything else as JSON. ``where`` names the call."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    try:
        return json.dumps(value, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise OutputError(
            f"{where}: expected bytes or a JSON-serializable value, got {type(value).__name__} ({exc})"
        ) from exc


def _is_temporary(exc: BaseException) -> bool:
    """A failure that may pass on a retry: the sidecar down, slow or busy."""
    code = getattr(exc, "code", None)
    if callable(code):
        try:
            return getattr(code(), "name", "") in TEMPORARY_CODES
        except Exception:
            return False
    return isinstance(exc, (ConnectionError, TimeoutError, SidecarUnavailable))


def _describe(exc: BaseException) -> str:
    """The gRPC status code and details of an RpcError, else the exception's type and text."""
    code, details = getattr(exc, "code", None), getattr(exc, "details", None)
    if callable(code) and callable(details):
        try:
            status = code()
            return f"{getattr(status, 'name', status)}: {details()}"
        except Exception:  # an RpcError that is not a call outcome
            pass
    return f"{type(exc).__name__}: {exc}"


class DaprOutputs:
    """``context.send`` / ``context.state`` through the Dapr sidecar's gRPC API."""

    def __init__(
        self,
        function: FunctionContext,
        address: SidecarAddress | str | None = None,
        outbound: Callable[[OutboundCall], None] | None = None,
    ) -> None:
        self.function = function
        """The FunctionContext whose ``outputs`` and ``states`` are used."""
        if not isinstance(address, SidecarAddress):
            address = SidecarAddress(address or DEFAULT_GRPC)
        self.address = address
        """Where the sidecar is."""
        self.outbound = outbound
        """The plugins' outbound hook, called before every call to the sidecar."""
        self._client: DaprApi | None = None
        self._lock = threading.Lock()
        self._closed = False

    def client(self) -> DaprApi:
        """The shared connection, made on first use (waiting for the sidecar's gRPC API)."""
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._closed:
                raise OutputError(f"function {self.function.name!r}: Dapr outputs are closed", temporary=True)
            if self._client is None:
                api = DaprApi(self.address)
                try:
                    api.wait_ready()
                except SidecarUnavailable as exc:
                    api.close()
                    raise OutputError(f"cannot connect to the Dapr sidecar: {exc}", temporary=True) from exc
                self._client = api
            return self._client

    def prepare(self, call: OutboundCall) -> OutboundCall:
        """Let plugins add metadata and headers to a call before it goes out."""
        if self.outbound is not None:
            call.invocation = current_invocation.get()
            self.outbound(call)
        return call

    def send(
        self,
        data: Any,
        output: str | None = None,
        metadata: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> list[Any]:
        targets = self._targets(output)
        where = f"send(output={output!r})" if output is not None else "send()"
        body, default_type = encode(data, where)
        content_type = content_type or default_type
        return [self._send_one(component, body, content_type, metadata) for component in targets]

    def _targets(self, output: str | None) -> list[Component]:
        outputs = self.function.outputs
        if output is None:
            if not outputs:
                raise OutputError("send() with no output name: the context defines no outputs")
            return list(outputs.values())
        if output not in outputs:
            if not outputs:
                raise OutputError(f"send(output={output!r}): the context defines no outputs")
            raise OutputError(f"send(output={output!r}): expected one of {', '.join(outputs)}")
        return [outputs[output]]

    def _send_one(
        self, component: Component, body: bytes, content_type: str, metadata: Mapping[str, str] | None
    ) -> Any:
        operation = component.operation or DEFAULT_OPERATION
        if component.kind == "pubsub":
            action = f"publish to topic {component.topic!r} of pubsub {component.component_name!r}"
            call = OutboundCall("publish", component.name, component.component_name, component.topic)
        else:
            action = f"invoke binding {component.component_name!r} operation {operation!r}"
            call = OutboundCall("binding", component.name, component.component_name, operation)
        call.metadata.update({**component.metadata, **(metadata or {})})
        self.prepare(call)
        merged = call.metadata
        token = outbound_headers.set(call.headers)
        error: BaseException | None = None
        try:
            client = self.client()
            if component.kind == "pubsub":
                client.publish(component.component_name, component.topic, body, content_type, merged)
                return None
            return client.invoke_binding(component.component_name, operation, body, merged)
        except OutputError as exc:
            error = exc
            raise
        except Exception as exc:
            error = OutputError(
                f"send(output={component.name!r}): {action} failed: {_describe(exc)}",
                temporary=_is_temporary(exc),
            )
            raise error from exc
        finally:
            outbound_headers.reset(token)
            call.done(error)

    def state(self, name: str) -> DaprState:
        states = self.function.states
        if name not in states:
            if not states:
                raise OutputError(f"state({name!r}): the context defines no state stores")
            raise OutputError(f"state({name!r}): expected one of {', '.join(states)}")
        return DaprState(self, states[name])

    def close(self) -> None:
        """Close the client, if one was created. Later calls raise OutputError."""
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            client.close()


class DaprState:
    """One Dapr state store, with the methods of ``testing.MemoryState``."""

    def __init__(self, outputs: DaprOutputs, store: StateStore) -> None:
        self._outputs = outputs
        self.store = store
        """The StateStore from the FunctionContext."""

    def _fail(self, op: str, exc: Exception) -> OutputError:
        return OutputError(
            f"state({self.store.name!r}).{op} on Dapr store {self.store.component_name!r} failed: "
            f"{_describe(exc)}",
            temporary=_is_temporary(exc),
        )

    def _call(self, op: str, run: Callable[[DaprApi], Any]) -> Any:
        """Run one state operation with the plugins' outbound headers; failures raise OutputError."""
        call = self._outputs.prepare(
            OutboundCall("state", self.store.name, self.store.component_name, op.split("(", 1)[0])
        )
        token = outbound_headers.set(call.headers)
        error: BaseException | None = None
        try:
            return run(self._outputs.client())
        except OutputError as exc:
            error = exc
            raise
        except Exception as exc:
            error = self._fail(op, exc)
            raise error from exc
        finally:
            outbound_headers.reset(token)
            call.done(error)

    def get(self, key: str, default: Any = None) -> Any:
        """The value at ``key``, JSON-decoded when it is JSON; ``default`` when the key is absent."""
        store = self.store.component_name
        data = self._call(f"get({key!r})", lambda c: c.get_state(store, key))
        if not data:
            return default
        try:
            return json.loads(data)
        except ValueError:
            return bytes(data)

    def save(self, key: str, value: Any) -> None:
        """Store ``value`` at ``key``: bytes as is, anything else as JSON."""
        body = self._encode(value, f"save({key!r})")
        store = self.store.component_name
        self._call(f"save({key!r})", lambda c: c.save_state(store, key, body))

    def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""
        store = self.store.component_name
        self._call(f"delete({key!r})", lambda c: c.delete_state(store, key))

    def transaction(self, upserts: Mapping[str, Any] | None = None, deletes: list[str] | None = None) -> None:
        """Save ``upserts`` and delete ``deletes`` atomically (the store must support transactions)."""
        keys = [*(upserts or {}), *(deletes or [])]
        op = f"transaction(keys={keys!r})"
        encoded = {key: self._encode(value, op) for key, value in (upserts or {}).items()}
        if not keys:
            return
        store = self.store.component_name
        self._call(op, lambda c: c.transaction(store, encoded, list(deletes or [])))

    def _encode(self, value: Any, op: str) -> bytes:
        return encode_state(value, f"state({self.store.name!r}).{op}")
