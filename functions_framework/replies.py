"""PURE: how a call's Outcome becomes an HTTP reply or a Dapr ack. The only place that decides it.

Used by the HTTP app, both Dapr app protocols, the plugins (``outcome.reply``) and ``testing``.

HTTP, by outcome:

=========================================  =====================================================
success                                    the return value (``to_http``): str, bytes, JSON, None → 204,
                                           ``(body, status[, headers])``, ``Response``, a Flask response
``Retry``                                  503
``Drop``                                   422
``HTTPError(status, message)``             its status and message
``werkzeug`` HTTP exception (``abort``)    its status and description
``BodyTooLarge``                           413
``BadCloudEvent``, ``EventDataError``      400 with the problem
funcd's timeout (``HandlerTimeout``)       504
``OutputError``                            503 when temporary, else 500
any other exception                        500; the message and traceback only with ``--debug``
=========================================  =====================================================

Error bodies are ``{"error": {"code", "message", "execution_id"[, "detail"]}}``.

Dapr acks: success → SUCCESS, ``Retry`` → RETRY, ``Drop`` → DROP, timeout → RETRY, an event refused
before the handler or that does not decode → ``on_invalid`` (DROP by default), a temporary
``OutputError`` → RETRY, a permanent one → DROP, any other exception → ``on_error`` (RETRY by default).
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from .errors import BodyTooLarge, HTTPError, OutputError, RequestError
from .invocation import Outcome, Status

Ack = Literal["SUCCESS", "RETRY", "DROP"]
ACKS: tuple[Ack, ...] = ("SUCCESS", "RETRY", "DROP")

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
BINARY = "application/octet-stream"

Headers = list[tuple[str, str]]


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


class HttpReply(NamedTuple):
    """What an HTTP request is answered with (a tuple: cheap to build on the hot path)."""

    status: int
    """The HTTP status code."""
    headers: Headers
    """Response headers, in order."""
    body: bytes | Iterable[bytes]
    """The body: bytes, or an iterable of chunks for a streamed Flask response."""


@dataclass(frozen=True)
class AckPolicy:
    """The acks chosen by settings for handler errors and for invalid events."""

    on_error: Ack = "RETRY"
    """Ack for a handler that raised anything but Retry, Drop or an OutputError."""
    on_invalid: Ack = "DROP"
    """Ack for an event refused before the handler (too large, malformed) or that does not decode."""


def encode_body(body: Any) -> tuple[bytes, str]:
    """Encode a return value: str → text, bytes → binary, None → empty, anything else → JSON."""
    if body is None:
        return b"", ""
    if isinstance(body, str):
        return body.encode(), TEXT
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body), BINARY
    try:
        return _JSON_ENCODER.encode(body).encode(), JSON
    except (TypeError, ValueError) as exc:
        raise TypeError(f"the handler returned {type(body).__name__}, which cannot be sent: {exc}") from None


_JSON_ENCODER = json.JSONEncoder(separators=(",", ":"))
"""One encoder for every reply: ``json.dumps`` with options builds a new one per call."""


def _is_wsgi_response(result: Any) -> bool:
    """A Flask/werkzeug response object (duck-typed, so that werkzeug is not imported here)."""
    return hasattr(result, "status_code") and hasattr(result, "iter_encoded")


def to_http(result: Any) -> HttpReply:
    """Map a handler's return value to a reply. Raises TypeError for what cannot be sent."""
    if _is_wsgi_response(result):
        body = result.iter_encoded() if result.is_streamed else result.get_data()
        return HttpReply(result.status_code, list(result.headers.items()), body)
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
        raise TypeError(f"the handler's reply: expected an HTTP status 100-599, got {status!r}")
    body, default_type = encode_body(result)
    if result is None and status == 200:
        status = 204
    out = [(str(k), str(v)) for k, v in headers.items()]
    if default_type and not any(k.lower() == "content-type" for k, _ in out):
        out.append(("Content-Type", content_type or default_type))
    return HttpReply(status, out, body)


def error_reply(status: int, message: str, execution_id: str, detail: str | None = None) -> HttpReply:
    """The JSON error reply every transport and ``testing`` use."""
    err: dict[str, Any] = {"code": status, "message": message, "execution_id": execution_id}
    if detail:
        err["detail"] = detail
    return HttpReply(status, [("Content-Type", JSON)], json.dumps({"error": err}).encode())


def failure(outcome: Outcome, debug: bool) -> tuple[int, str]:
    """The HTTP status and message for a call that did not succeed."""
    err = outcome.error
    status = outcome.status
    if status is Status.TIMEOUT:
        return 504, str(err) or "the function did not finish in time"
    if status is Status.RETRY:
        return 503, "the function asked for a retry" + (f": {err}" if str(err) else "")
    if status is Status.DROP:
        return 422, "the function dropped the request" + (f": {err}" if str(err) else "")
    if isinstance(err, BodyTooLarge):
        return 413, str(err)
    if isinstance(err, RequestError):
        return 400, str(err)
    if isinstance(err, HTTPError):
        return err.status, err.message
    code = getattr(err, "code", None)
    if isinstance(code, int) and 400 <= code <= 599 and hasattr(err, "description"):  # werkzeug abort()
        return code, str(err.description)  # type: ignore[union-attr]
    if isinstance(err, OutputError) and err.temporary:
        message = f"a Dapr output is unavailable: {err}" if debug else "a Dapr output is unavailable"
        return 503, message
    if debug:
        return 500, f"the function raised {type(err).__name__}: {err}"
    return 500, "the function raised an exception; see the logs for this execution id"


def http_reply(outcome: Outcome, execution_id: str, debug: bool = False) -> HttpReply:
    """The reply to an HTTP request for ``outcome``."""
    if outcome.status is Status.SUCCESS:
        try:
            return to_http(outcome.result)
        except TypeError as exc:
            outcome.status, outcome.error = Status.ERROR, exc
            return error_reply(
                500,
                "the function returned a value that cannot be sent",
                execution_id,
                str(exc) if debug else None,
            )
    status, message = failure(outcome, debug)
    detail = None
    if debug and outcome.status is Status.ERROR and outcome.error is not None and status >= 500:
        detail = "".join(traceback.format_exception(outcome.error))
    return error_reply(status, message, execution_id, detail)


def ack(outcome: Outcome, policy: AckPolicy) -> Ack:
    """The Dapr ack for a delivery's ``outcome``."""
    status = outcome.status
    if status is Status.SUCCESS:
        return "SUCCESS"
    if status is Status.RETRY or status is Status.TIMEOUT:
        return "RETRY"
    if status is Status.DROP:
        return "DROP"
    if status is Status.INVALID:
        return policy.on_invalid
    err = outcome.error
    if isinstance(err, OutputError):
        return "RETRY" if err.temporary else "DROP"
    return policy.on_error


def binding_http_status(ack_: Ack) -> int:
    """How the Dapr HTTP app protocol answers an input binding: 200 acks it, 503 asks for a retry."""
    return 503 if ack_ == "RETRY" else 200
