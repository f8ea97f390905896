"""The HTTP runtime: a lean WSGI app for ``handler(context, event)``, Flask for ``@http`` handlers.

Every path and method go to the function, except the reserved health and readiness paths.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import HTTPError
from ..event import Event, Trigger
from ..invocation import Invocation, Invoker, Outcome, Status, new_execution_id
from ..loader import LoadedFunction
from ..response import to_http
from .drain import answer_ready
from .lifecycle import Lifecycle

if TYPE_CHECKING:
    from .dapr_http import DaprHttpRoutes

log = logging.getLogger("functions_framework.http")

EXECUTION_ID_HEADER = "Function-Execution-Id"
_EXECUTION_ID_ENVIRON = "HTTP_FUNCTION_EXECUTION_ID"
HTTP_TRIGGER = Trigger("http", "http")

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


@dataclass(frozen=True)
class HttpOptions:
    """Settings of the HTTP runtime."""

    max_body: int = 32 * 1024 * 1024
    """Largest request body accepted, in bytes; larger ones get 413."""
    health_path: str = "/healthz"
    """Liveness path: 200 while the process serves."""
    ready_path: str = "/readyz"
    """Readiness path: 200, or 503 once draining has begun."""
    debug: bool = False
    """Put exception details and tracebacks in error responses."""


class BodyTooLarge(Exception):
    pass


def read_body(environ: dict[str, Any], limit: int) -> bytes:
    length = environ.get("CONTENT_LENGTH")
    stream = environ["wsgi.input"]
    if length:
        try:
            n = int(length)
        except ValueError:
            n = -1
        if n > limit:
            raise BodyTooLarge(n)
        if n >= 0:
            return bytes(stream.read(n)) if n else b""
    if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        data = bytes(stream.read(limit + 1))
        if len(data) > limit:
            raise BodyTooLarge(len(data))
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


class BadCloudEvent(ValueError):
    pass


def parse_cloudevent(environ: dict[str, Any], body: bytes, raw: bool = True) -> Any:
    """Parse with the CloudEvents SDK. ``raw`` keeps binary-mode data as bytes (structured data is JSON)."""
    if environ.get("CONTENT_TYPE", "").startswith("application/cloudevents-batch+json"):
        raise BadCloudEvent("batched CloudEvents (application/cloudevents-batch+json) are not supported")
    from cloudevents.exceptions import GenericException
    from cloudevents.http import from_http

    headers = environ_headers(environ)
    try:
        if raw and "HTTP_CE_SPECVERSION" in environ:
            return from_http(headers, body, data_unmarshaller=lambda b: b)
        return from_http(headers, body)
    except (GenericException, ValueError, TypeError) as exc:
        raise BadCloudEvent(f"malformed CloudEvent: {exc}") from None


def cloudevent_to_event(
    ce: Any, environ: dict[str, Any], body: bytes, headers: dict[str, str], decoded: bool = False
) -> Event:
    """An Event from an SDK CloudEvent. ``decoded``: binary-mode data was already decoded by the SDK."""
    attrs = dict(ce.get_attributes())
    structured = environ.get("CONTENT_TYPE", "").startswith("application/cloudevents+json")
    known = {
        "id",
        "source",
        "type",
        "subject",
        "time",
        "specversion",
        "datacontenttype",
        "dataschema",
        "data",
    }
    kwargs: dict[str, Any] = {}
    if decoded and not structured:
        kwargs["data"] = ce.get_data()
    if structured:
        data = ce.get_data()
        kwargs["data"] = data
        if isinstance(data, (bytes, bytearray)):
            body = bytes(data)
        elif isinstance(data, str):
            body = data.encode()
        else:
            body = json.dumps(data).encode() if data is not None else b""
    return Event(
        id=str(attrs.get("id", "")),
        source=str(attrs.get("source", "")),
        type=str(attrs.get("type", "")),
        subject=str(attrs.get("subject") or ""),
        time=str(attrs.get("time") or ""),
        specversion=str(attrs.get("specversion", "")),
        content_type=str(attrs.get("datacontenttype") or ("application/json" if structured else "")),
        body=body,
        headers=headers,
        extensions={k: v for k, v in attrs.items() if k not in known},
        trigger=HTTP_TRIGGER,
        method=environ.get("REQUEST_METHOD", ""),
        path=environ.get("PATH_INFO", "/"),
        query_string=environ.get("QUERY_STRING", ""),
        **kwargs,
    )


def http_event(environ: dict[str, Any], body: bytes, execution_id: str) -> Event:
    if is_cloudevent(environ):
        ce = parse_cloudevent(environ, body)
        return cloudevent_to_event(ce, environ, body, environ_headers(environ))
    return Event(
        id=execution_id,
        content_type=environ.get("CONTENT_TYPE", ""),
        body=body,
        headers_factory=lambda: environ_headers(environ),
        trigger=HTTP_TRIGGER,
        method=environ["REQUEST_METHOD"],
        path=environ.get("PATH_INFO") or "/",
        query_string=environ.get("QUERY_STRING", ""),
    )


def error_body(status: int, message: str, execution_id: str, detail: str | None = None) -> bytes:
    err: dict[str, Any] = {"code": status, "message": message, "execution_id": execution_id}
    if detail:
        err["detail"] = detail
    return json.dumps({"error": err}).encode()


def failure_status(outcome: Outcome, debug: bool) -> tuple[int, str]:
    """The HTTP status and message for a call that did not succeed."""
    err = outcome.error
    if outcome.status is Status.INVALID:
        return 400, str(err)
    if outcome.status is Status.TIMEOUT:
        return 504, str(err) or "the function did not finish in time"
    if outcome.status is Status.RETRY:
        return 503, "the function asked for a retry" + (f": {err}" if str(err) else "")
    if outcome.status is Status.DROP:
        return 422, "the function dropped the request" + (f": {err}" if str(err) else "")
    if isinstance(err, HTTPError):
        return err.status, err.message
    if debug:
        return 500, f"the function raised {type(err).__name__}: {err}"
    return 500, "the function raised an exception; see the logs for this execution id"


def error_detail(outcome: Outcome, debug: bool) -> str | None:
    if debug and outcome.error is not None and outcome.status is Status.ERROR:
        return "".join(traceback.format_exception(outcome.error))
    return None


class HttpApp:
    """The WSGI application serving one function."""

    def __init__(
        self,
        function: LoadedFunction,
        invoker: Invoker,
        options: HttpOptions,
        lifecycle: Lifecycle,
        dapr_routes: DaprHttpRoutes | None = None,
        serve_function: bool = True,
    ) -> None:
        self.function = function
        self.invoker = invoker
        self.options = options
        self.lifecycle = lifecycle
        self.dapr_routes = dapr_routes
        """Routes of the Dapr HTTP app protocol, when the function has inputs and uses it."""
        self.serve_function = serve_function
        """False for a function without an HTTP trigger: only health and Dapr routes answer."""
        self.flask_app = _flask_app(function, invoker, options) if function.signature == "http" else None
        self.keep_alive: Any = None
        """What the worker must keep referenced while it serves (the AppCallback server)."""

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == self.options.health_path:
            return self._send(start_response, 200, [("Content-Type", "text/plain")], b"ok")
        if path == self.options.ready_path:
            if not answer_ready(self.lifecycle, environ, self.dapr_routes is not None):
                return self._send(start_response, 503, [("Content-Type", "text/plain")], b"draining")
            return self._send(start_response, 200, [("Content-Type", "text/plain")], b"ready")
        if self.dapr_routes is not None and self.dapr_routes.owns(path):
            return self._dapr(environ, start_response)
        if not self.serve_function:
            return self._error(start_response, 404, "this function has no HTTP trigger", "")
        lifecycle = self.lifecycle
        lifecycle.enter()
        try:
            execution_id = environ.get(_EXECUTION_ID_ENVIRON) or new_execution_id()
            if self.flask_app is not None:
                return self._flask(environ, start_response, execution_id)
            try:
                body = read_body(environ, self.options.max_body)
            except BodyTooLarge as exc:
                return self._error(
                    start_response,
                    413,
                    f"request body of {exc.args[0]} bytes exceeds the limit of {self.options.max_body} bytes",
                    execution_id,
                )
            if self.function.signature == "cloudevent":
                return self._cloudevent(environ, start_response, body, execution_id)
            try:
                event = http_event(environ, body, execution_id)
            except BadCloudEvent as exc:
                return self._error(start_response, 400, str(exc), execution_id)
            invocation, outcome = self.invoker.invoke(event, execution_id)
            return self._respond(start_response, invocation, outcome)
        finally:
            lifecycle.leave()

    def _dapr(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        routes = self.dapr_routes
        assert routes is not None
        # The envelope may carry the payload in base64 (4/3 larger); the router checks the decoded size.
        limit = self.options.max_body * 4 // 3 + 64 * 1024
        try:
            body = read_body(environ, limit)
        except BodyTooLarge as exc:
            status, headers, reply = routes.too_large(environ, exc.args[0], limit)
            return self._send(start_response, status, headers, reply)
        status, headers, reply = routes.handle(environ, body, environ_headers(environ))
        return self._send(start_response, status, headers, reply)

    def _send(
        self, start_response: StartResponse, status: int, headers: list[tuple[str, str]], body: bytes
    ) -> Iterable[bytes]:
        headers.append(("Content-Length", str(len(body))))
        start_response(status_line(status), headers)
        return [body]

    def _error(
        self,
        start_response: StartResponse,
        status: int,
        message: str,
        execution_id: str,
        detail: str | None = None,
    ) -> Iterable[bytes]:
        headers = [("Content-Type", "application/json"), (EXECUTION_ID_HEADER, execution_id)]
        return self._send(start_response, status, headers, error_body(status, message, execution_id, detail))

    def _respond(
        self, start_response: StartResponse, invocation: Invocation, outcome: Outcome
    ) -> Iterable[bytes]:
        eid = invocation.execution_id
        if outcome.status is Status.SUCCESS:
            try:
                status, headers, body = to_http(outcome.result)
            except TypeError as exc:
                log.error("cannot send the handler's return value: %s", exc)
                return self._error(
                    start_response,
                    500,
                    "the function returned a value that cannot be sent",
                    eid,
                    str(exc) if self.options.debug else None,
                )
            headers.append((EXECUTION_ID_HEADER, eid))
            if invocation.response_headers:
                headers.extend(invocation.response_headers.items())
            return self._send(start_response, status, headers, body)
        status, message = failure_status(outcome, self.options.debug)
        return self._error(start_response, status, message, eid, error_detail(outcome, self.options.debug))

    def _cloudevent(
        self, environ: dict[str, Any], start_response: StartResponse, body: bytes, execution_id: str
    ) -> Iterable[bytes]:
        try:
            if not is_cloudevent(environ):
                raise BadCloudEvent(
                    "expected a CloudEvent (ce-* headers or application/cloudevents+json), "
                    "got a plain HTTP request"
                )
            ce = parse_cloudevent(environ, body, raw=False)
        except BadCloudEvent as exc:
            return self._error(start_response, 400, str(exc), execution_id)
        event = cloudevent_to_event(ce, environ, body, environ_headers(environ), decoded=True)
        handler = self.function.handler
        invocation, outcome = self.invoker.invoke(event, execution_id, call=lambda: handler(ce))
        if outcome.ok:
            outcome.result = "OK"
        return self._respond(start_response, invocation, outcome)

    def _flask(
        self, environ: dict[str, Any], start_response: StartResponse, execution_id: str
    ) -> Iterable[bytes]:
        length = environ.get("CONTENT_LENGTH")
        if length and length.isdigit() and int(length) > self.options.max_body:
            return self._error(
                start_response,
                413,
                f"request body of {length} bytes exceeds the limit of {self.options.max_body} bytes",
                execution_id,
            )
        environ["funcd.execution_id"] = execution_id
        assert self.flask_app is not None
        return self.flask_app(environ, start_response)  # type: ignore[no-any-return]


def _flask_app(function: LoadedFunction, invoker: Invoker, options: HttpOptions) -> Any:
    """A Flask app that calls a Google-style ``handler(request)`` for every path and method."""
    import flask
    from werkzeug.exceptions import HTTPException

    app = flask.Flask(f"funcd.{function.target}")
    app.config["MAX_CONTENT_LENGTH"] = options.max_body
    handler = function.handler
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]

    def view(path: str = "") -> Any:
        req = flask.request._get_current_object()  # type: ignore[attr-defined]
        environ = req.environ
        eid = environ["funcd.execution_id"]
        event = Event(
            id=eid,
            content_type=environ.get("CONTENT_TYPE", ""),
            headers_factory=lambda: environ_headers(environ),
            trigger=HTTP_TRIGGER,
            method=environ["REQUEST_METHOD"],
            path=environ.get("PATH_INFO") or "/",
            query_string=environ.get("QUERY_STRING", ""),
        )
        invocation, outcome = invoker.invoke(event, eid, call=lambda: flask.make_response(handler(req)))
        if outcome.ok:
            resp = outcome.result
        elif isinstance(outcome.error, HTTPException):
            resp = outcome.error.get_response()
        else:
            status, message = failure_status(outcome, options.debug)
            body = error_body(status, message, eid, error_detail(outcome, options.debug))
            resp = flask.Response(body, status, mimetype="application/json")
        resp.headers[EXECUTION_ID_HEADER] = eid
        for k, v in invocation.response_headers.items():
            resp.headers[k] = v
        return resp

    app.add_url_rule("/", "funcd", view, methods=methods, defaults={"path": ""})
    app.add_url_rule("/<path:path>", "funcd_path", view, methods=methods)
    return app
