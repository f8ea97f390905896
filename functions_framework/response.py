"""What an HTTP handler may return, and how it becomes status, headers and body."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class Response:
    """An explicit HTTP response."""

    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self,
        body: Any = b"",
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        self.body = body
        self.status = status
        self.headers = dict(headers or {})
        self.content_type = content_type

    def __repr__(self) -> str:
        return f"Response(status={self.status}, content_type={self.content_type!r})"


JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
BINARY = "application/octet-stream"


def encode_body(body: Any) -> tuple[bytes, str]:
    """Encode a return value: str → text, bytes → binary, None → empty, anything else → JSON."""
    if body is None:
        return b"", ""
    if isinstance(body, str):
        return body.encode(), TEXT
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body), BINARY
    try:
        return json.dumps(body, separators=(",", ":"), default=_no_default).encode(), JSON
    except (TypeError, ValueError) as exc:
        raise TypeError(f"the handler returned {type(body).__name__}, which cannot be sent: {exc}") from None


def _no_default(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_http(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Map a handler's return value to (status, headers, body). Raises TypeError for what cannot be sent."""
    status = 200
    headers: dict[str, str] = {}
    content_type: str | None = None
    if isinstance(result, Response):
        status, headers, content_type, result = (
            result.status,
            result.headers,
            result.content_type,
            result.body,
        )
    elif isinstance(result, tuple):
        if not 2 <= len(result) <= 3:
            raise TypeError(f"a tuple return: expected (body, status[, headers]), got {len(result)} items")
        if len(result) == 2 and isinstance(result[1], Mapping):
            result, headers = result[0], dict(result[1])
        else:
            status = result[1]
            headers = dict(result[2]) if len(result) == 3 else {}
            result = result[0]
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise TypeError(f"a tuple return: expected an HTTP status 100-599, got {status!r}")
    body, default_type = encode_body(result)
    if result is None and status == 200:
        status = 204
    out = [(str(k), str(v)) for k, v in headers.items()]
    if default_type and not any(k.lower() == "content-type" for k, _ in out):
        out.append(("Content-Type", content_type or default_type))
    return status, out, body
