"""The HTTP runtime: one WSGI app per worker for every signature.

Health and readiness paths, plugin routes and the Dapr HTTP app protocol routes answer first; every other
path and method go to the function through its adapter. Replies come from ``replies.py``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..errors import BadCloudEvent, BodyTooLarge, RequestError
from ..event import HTTP_TRIGGER, Event
from ..invocation import Invocation, Invoker, Outcome, Status, new_execution_id
from ..plugins import Hooks, Rejected, RejectReason, WsgiApp
from ..replies import HttpReply, error_reply, failure, http_reply
from ..settings import Settings
from .drain import answer_ready
from .lifecycle import Lifecycle

if TYPE_CHECKING:
    from .dapr_http import DaprHttpRoutes

log = logging.getLogger("functions_framework.http")

EXECUTION_ID_HEADER = "Function-Execution-Id"
EXECUTION_ID_ENVIRON = "HTTP_FUNCTION_EXECUTION_ID"

StartResponse = Callable[..., Any]

_REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    500: "Internal Server Error",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def status_line(status: int) -> str:
    reason = _REASONS.get(status)
    if reason is None:
        from http import HTTPStatus

        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
    return f"{status} {reason}"


def read_body(environ: dict[str, Any], limit: int) -> bytes:
    """The request body; ``BodyTooLarge`` over ``limit`` bytes."""
    length = environ.get("CONTENT_LENGTH")
    stream = environ["wsgi.input"]
    if length:
        try:
            n = int(length)
        except ValueError:
            n = -1
        if n > limit:
            raise BodyTooLarge(n, limit)
        if n >= 0:
            return bytes(stream.read(n)) if n else b""
    if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        data = bytes(stream.read(limit + 1))
        if len(data) > limit:
            raise BodyTooLarge(len(data), limit)
        return data
    return b""


def environ_headers(environ: dict[str, Any]) -> dict[str, str]:
    headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    if environ.get("CONTENT_LENGTH"):
        headers["content-length"] = environ["CONTENT_LENGTH"]
    return headers


def is_cloudevent(environ: dict[str, Any]) -> bool:
    return "HTTP_CE_SPECVERSION" in environ or environ.get("CONTENT_TYPE", "").startswith(
        ("application/cloudevents+json", "application/cloudevents-batch+json")
    )


_REQUIRED = ("id", "source", "type")
_KNOWN = {"id", "source", "type", "subject", "time", "specversion", "datacontenttype", "dataschema", "data"}


def parse_cloudevent(environ: dict[str, Any], body: bytes) -> Any:
    """Parse with the CloudEvents SDK; binary-mode data stays bytes. Raises ``BadCloudEvent``."""
    content_type = environ.get("CONTENT_TYPE", "")
    if content_type.startswith("application/cloudevents-batch+json"):
        raise BadCloudEvent("batched CloudEvents (application/cloudevents-batch+json) are not supported")
    binary = "HTTP_CE_SPECVERSION" in environ
    if binary:
        missing = [f"ce-{a}" for a in _REQUIRED if not environ.get(f"HTTP_CE_{a.upper()}")]
    else:
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise BadCloudEvent(
                f"structured CloudEvent: expected a JSON object, got malformed JSON: {exc}"
            ) from None
        if not isinstance(doc, dict):
            raise BadCloudEvent(f"structured CloudEvent: expected a JSON object, got {type(doc).__name__}")
        missing = [a for a in (*_REQUIRED, "specversion") if not doc.get(a)]
    if missing:
        mode = "binary CloudEvent: header" if binary else "structured CloudEvent: attribute"
        raise BadCloudEvent(f"{mode}(s) {', '.join(missing)} required by CloudEvents 1.0, missing")
    from cloudevents.exceptions import GenericException
    from cloudevents.http import from_http

    try:
        if binary:
            return from_http(environ_headers(environ), body, data_unmarshaller=lambda b: b)
        return from_http(environ_headers(environ), body)
    except (GenericException, ValueError, TypeError) as exc:
        raise BadCloudEvent(f"malformed CloudEvent: {exc}") from None


def cloudevent_to_event(ce: Any, environ: dict[str, Any], body: bytes, execution_id: str) -> Event:
    """An Event from an SDK CloudEvent received over HTTP."""
    attrs = dict(ce.get_attributes())
    kwargs: dict[str, Any] = {}
    if environ.get("CONTENT_TYPE", "").startswith("application/cloudevents+json"):
        data = ce.get_data()
        kwargs["data"] = data
        if isinstance(data, (bytes, bytearray)):
            body = bytes(data)
        elif isinstance(data, str):
            body = data.encode()
        else:
            body = json.dumps(data).encode() if data is not None else b""
        content_type = str(attrs.get("datacontenttype") or "application/json")
    else:
        content_type = str(attrs.get("datacontenttype") or "")
    return Event(
        id=str(attrs.get("id", "")),
        source=str(attrs.get("source", "")),
        type=str(attrs.get("type", "")),
        subject=str(attrs.get("subject") or ""),
        time=str(attrs.get("time") or ""),
        specversion=str(attrs.get("specversion", "")),
        content_type=content_type,
        body=body,
        headers_factory=lambda: environ_headers(environ),
        extensions={k: v for k, v in attrs.items() if k not in _KNOWN},
        trigger=HTTP_TRIGGER,
        method=environ.get("REQUEST_METHOD", ""),
        path=environ.get("PATH_INFO") or "/",
        query_string=environ.get("QUERY_STRING", ""),
        environ=environ,
        **kwargs,
    )


def http_event(environ: dict[str, Any], body: bytes, execution_id: str, cloudevents: bool = True) -> Event:
    """The Event of an HTTP request; parsed as a CloudEvent when it is one and ``cloudevents``."""
    if cloudevents and is_cloudevent(environ):
        return cloudevent_to_event(parse_cloudevent(environ, body), environ, body, execution_id)
    return Event(
        id=execution_id,
        content_type=environ.get("CONTENT_TYPE", ""),
        body=body,
        headers_factory=lambda: environ_headers(environ),
        trigger=HTTP_TRIGGER,
        method=environ["REQUEST_METHOD"],
        path=environ.get("PATH_INFO") or "/",
        query_string=environ.get("QUERY_STRING", ""),
        environ=environ,
    )


class HttpApp:
    """The WSGI application serving one function."""

    def __init__(
        self,
        invoker: Invoker,
        settings: Settings,
        lifecycle: Lifecycle,
        dapr_routes: DaprHttpRoutes | None = None,
        serve_function: bool = True,
        routes: dict[str, WsgiApp] | None = None,
    ) -> None:
        self.invoker = invoker
        self.settings = settings
        self.lifecycle = lifecycle
        self.hooks: Hooks = invoker.hooks
        self.dapr_routes = dapr_routes
        """Routes of the Dapr HTTP app protocol, when the function has inputs and uses it."""
        self.serve_function = serve_function
        """False for a function without an HTTP trigger: only health, plugin and Dapr routes answer."""
        self.routes = routes or {}
        """Plugin routes (e.g. ``/metrics``), by exact path."""
        self.cloudevents = invoker.adapter.wants_cloudevent
        self.keep_alive: Any = None
        """What the worker must keep referenced while it serves (the AppCallback server)."""

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        settings = self.settings
        if path == settings.health_path:
            return self._send(start_response, HttpReply(200, [("Content-Type", "text/plain")], b"ok"))
        if path == settings.ready_path:
            if not answer_ready(self.lifecycle, environ, self.dapr_routes is not None):
                return self._send(
                    start_response, HttpReply(503, [("Content-Type", "text/plain")], b"draining")
                )
            return self._send(start_response, HttpReply(200, [("Content-Type", "text/plain")], b"ready"))
        route = self.routes.get(path)
        if route is not None:
            return route(environ, start_response)  # type: ignore[no-any-return]
        if self.dapr_routes is not None and self.dapr_routes.owns(path):
            return self._dapr(environ, start_response)
        if not self.serve_function:
            reply = error_reply(404, f"no route {path}: this function has no HTTP trigger", "")
            return self._send(start_response, reply)
        lifecycle = self.lifecycle
        lifecycle.enter()
        try:
            execution_id = environ.get(EXECUTION_ID_ENVIRON) or new_execution_id()
            environ[EXECUTION_ID_ENVIRON] = execution_id  # the function sees it, as with Google's framework
            try:
                body = read_body(environ, settings.max_body)
                event = http_event(environ, body, execution_id, self.cloudevents)
            except RequestError as exc:
                return self._reject(start_response, environ, exc, execution_id)
            invocation, _, reply = self.invoker.invoke(event, execution_id, self._reply)
            headers = [*reply.headers, (EXECUTION_ID_HEADER, execution_id)]
            if invocation.response_headers:
                headers.extend(invocation.response_headers.items())
            return self._send(start_response, HttpReply(reply.status, headers, reply.body))
        finally:
            lifecycle.leave()

    def _reply(self, invocation: Invocation, outcome: Outcome) -> HttpReply:
        reply = http_reply(outcome, invocation.execution_id, self.settings.debug)
        outcome.reply = reply.status
        return reply

    def _reject(
        self, start_response: StartResponse, environ: dict[str, Any], exc: RequestError, execution_id: str
    ) -> Iterable[bytes]:
        status, message = failure(Outcome(Status.INVALID, error=exc), self.settings.debug)
        log.info("refused %s %s: %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"), message)
        reason: RejectReason = "too_large" if isinstance(exc, BodyTooLarge) else "bad_cloudevent"
        self.hooks.rejected(
            Rejected(
                reason,
                HTTP_TRIGGER,
                status,
                message,
                environ_headers(environ),
                execution_id,
                method=environ.get("REQUEST_METHOD", ""),
                path=environ.get("PATH_INFO") or "/",
            )
        )
        reply = error_reply(status, message, execution_id)
        return self._send(
            start_response,
            HttpReply(status, [*reply.headers, (EXECUTION_ID_HEADER, execution_id)], reply.body),
        )

    def _dapr(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        routes = self.dapr_routes
        assert routes is not None
        try:
            body = read_body(environ, routes.body_limit(environ))
        except BodyTooLarge as exc:
            return self._send(start_response, routes.too_large(environ, exc))
        return self._send(start_response, routes.handle(environ, body, environ_headers(environ)))

    def _send(self, start_response: StartResponse, reply: HttpReply) -> Iterable[bytes]:
        headers = reply.headers
        body = reply.body
        if isinstance(body, (bytes, bytearray)):
            if not any(k.lower() == "content-length" for k, _ in headers):
                headers = [*headers, ("Content-Length", str(len(body)))]
            start_response(status_line(reply.status), headers)
            return [bytes(body)]
        start_response(status_line(reply.status), headers)
        return body
