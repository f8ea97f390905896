"""Event: one trigger-neutral shape for HTTP requests, CloudEvents, pub/sub messages and bindings.

``event.data`` is decoded lazily from ``event.body`` by content type, so a handler that never
reads it never pays for it, and one that reads malformed JSON gets ``EventDataError`` (400 over
HTTP, DROP for async deliveries by default).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs

from .errors import EventDataError

_UNSET: Any = object()

TriggerKind = Literal["http", "pubsub", "binding"]
TRIGGER_KINDS: tuple[TriggerKind, ...] = ("http", "pubsub", "binding")
TRACE_KEYS = ("traceparent", "tracestate", "baggage")
ENVIRON_TRACE_KEYS = tuple((key, "HTTP_" + key.upper()) for key in TRACE_KEYS)
"""The trace keys as WSGI environ names (``HTTP_TRACEPARENT``...)."""
GRPC_TRACE_BIN = "grpc-trace-bin"
"""The gRPC metadata key of the binary (OpenCensus) trace context, which daprd sends with deliveries."""


@dataclass(frozen=True)
class Trigger:
    """What delivered the event."""

    kind: TriggerKind
    """``http``, ``pubsub`` or ``binding``."""
    name: str
    """The input's name (``http`` for the HTTP trigger)."""


HTTP_TRIGGER = Trigger("http", "http")


def is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _charset(content_type: str) -> str:
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            return value.strip('"')
    return "utf-8"


def _hex(text: str, length: int) -> bool:
    return len(text) == length and all(c in "0123456789abcdef" for c in text)


def trace_id_of(traceparent: str) -> str:
    """The trace id of a W3C ``traceparent`` (``version-traceid-parentid-flags``), or '' when invalid:
    lower-case hex fields of the right lengths, version not ``ff``, ids not all zero."""
    parts = traceparent.strip().split("-")
    if len(parts) < 4 or not _hex(parts[0], 2) or parts[0] == "ff" or (parts[0] == "00" and len(parts) > 4):
        return ""
    _, trace_id, parent_id, flags = parts[:4]
    if not (_hex(trace_id, 32) and _hex(parent_id, 16) and _hex(flags, 2)):
        return ""
    if trace_id == "0" * 32 or parent_id == "0" * 16:
        return ""
    return trace_id


def traceparent_of_binary(value: bytes | str) -> str:
    """A W3C ``traceparent`` from a ``grpc-trace-bin`` value, or '' when it is not one.

    The layout (OpenCensus binary format, as daprd writes it): version 0, then field 0 and the 16-byte
    trace id, field 1 and the 8-byte span id, field 2 and one byte of trace flags."""
    data = value.encode("latin-1") if isinstance(value, str) else bytes(value)
    if len(data) < 27 or data[0] != 0 or data[1] != 0 or data[18] != 1:
        return ""
    flags = data[28] if len(data) >= 29 and data[27] == 2 else 0
    traceparent = f"00-{data[2:18].hex()}-{data[19:27].hex()}-{flags:02x}"
    return traceparent if trace_id_of(traceparent) else ""


def decode_body(body: bytes, content_type: str) -> Any:
    """JSON → Python objects, text → str, empty → None, anything else → the bytes."""
    if not body:
        return None
    if is_json(content_type):
        try:
            return json.loads(body)
        except ValueError as exc:
            raise EventDataError(
                f"malformed JSON body ({content_type or 'no content type'}): {exc}"
            ) from None
    media = content_type.split(";", 1)[0].strip().lower()
    if media.startswith("text/") or media in ("application/xml", "application/x-www-form-urlencoded"):
        try:
            return body.decode(_charset(content_type))
        except (UnicodeDecodeError, LookupError) as exc:
            raise EventDataError(f"body does not decode as {content_type}: {exc}") from None
    return body


class Event:
    """One delivery to the function, whatever the trigger."""

    __slots__ = (
        "_data",
        "_headers",
        "_headers_factory",
        "_query",
        "binding",
        "body",
        "content_type",
        "environ",
        "extensions",
        "id",
        "metadata",
        "method",
        "path",
        "pubsub_name",
        "query_string",
        "source",
        "specversion",
        "subject",
        "time",
        "topic",
        "trigger",
        "type",
    )

    def __init__(
        self,
        *,
        id: str = "",
        source: str = "",
        type: str = "",
        subject: str = "",
        time: str = "",
        specversion: str = "",
        content_type: str = "",
        body: bytes = b"",
        data: Any = _UNSET,
        headers: Mapping[str, str] | None = None,
        headers_factory: Callable[[], dict[str, str]] | None = None,
        metadata: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
        topic: str = "",
        pubsub_name: str = "",
        binding: str = "",
        trigger: Trigger = HTTP_TRIGGER,
        method: str = "",
        path: str = "",
        query_string: str = "",
        environ: dict[str, Any] | None = None,
    ) -> None:
        self.id = id
        self.source = source
        self.type = type
        self.subject = subject
        self.time = time
        self.specversion = specversion
        self.content_type = content_type
        self.body = body
        self._data = data
        self._headers = dict(headers) if headers is not None else None
        self._headers_factory = headers_factory
        self._query: dict[str, list[str]] | None = None
        self.metadata: Mapping[str, str] = metadata or {}
        self.extensions: Mapping[str, Any] = extensions or {}
        self.topic = topic
        self.pubsub_name = pubsub_name
        self.binding = binding
        self.trigger = trigger
        self.method = method
        self.path = path
        self.query_string = query_string
        self.environ = environ
        """The WSGI environ of an HTTP request (Flask-style signatures are served from it), else None."""

    @property
    def data(self) -> Any:
        """The body decoded by content type: JSON → objects, text → str, other → bytes, empty → None."""
        if self._data is _UNSET:
            self._data = decode_body(self.body, self.content_type)
        return self._data

    @property
    def headers(self) -> dict[str, str]:
        """Transport headers with lower-case names."""
        if self._headers is None:
            self._headers = self._headers_factory() if self._headers_factory else {}
        return self._headers

    @property
    def query(self) -> dict[str, list[str]]:
        """The parsed query string: name → list of values."""
        if self._query is None:
            self._query = parse_qs(self.query_string, keep_blank_values=True)
        return self._query

    @property
    def is_cloudevent(self) -> bool:
        return bool(self.specversion)

    @property
    def trace_carrier(self) -> dict[str, str]:
        """The inbound W3C trace context: ``traceparent``, ``tracestate`` and ``baggage``.

        Read from the transport headers first (HTTP headers, gRPC metadata, a bulk entry's metadata),
        then from the CloudEvent's extensions (where Dapr puts them in the envelope). Over gRPC,
        daprd sends the span of its delivery as ``grpc-trace-bin`` metadata only; it is read as the
        ``traceparent`` before the envelope's, which is the span of the publish.
        """
        carrier: dict[str, str] = {}
        if self._headers is None and self.environ is not None:  # an HTTP request: read only these keys
            environ, extensions = self.environ, self.extensions
            for key, name in ENVIRON_TRACE_KEYS:
                value = environ.get(name) or extensions.get(key)
                if value:
                    carrier[key] = str(value)
            return carrier
        headers = self.headers
        extensions = self.extensions
        if not headers.get("traceparent") and headers.get(GRPC_TRACE_BIN):
            binary = traceparent_of_binary(headers[GRPC_TRACE_BIN])
            if binary:
                headers = {**headers, "traceparent": binary}
        for key in TRACE_KEYS:
            value = headers.get(key) or extensions.get(key)
            if value:
                carrier[key] = str(value)
        return carrier

    @property
    def trace_id(self) -> str:
        """The trace id of the inbound ``traceparent``, or '' when there is none or it is invalid."""
        return trace_id_of(self.trace_carrier.get("traceparent", ""))

    def json(self) -> Any:
        """The body parsed as JSON whatever the content type; raises ``EventDataError``."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise EventDataError(f"malformed JSON body: {exc}") from None

    def text(self) -> str:
        """The body decoded as text (charset from the content type, else UTF-8)."""
        try:
            return self.body.decode(_charset(self.content_type))
        except (UnicodeDecodeError, LookupError) as exc:
            raise EventDataError(f"body is not text in {_charset(self.content_type)}: {exc}") from None

    def __repr__(self) -> str:
        return (
            f"Event(id={self.id!r}, trigger={self.trigger.kind}:{self.trigger.name}, "
            f"type={self.type!r}, content_type={self.content_type!r}, {len(self.body)} bytes)"
        )
