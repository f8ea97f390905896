"""The adapters: one per signature a function may have, chosen once, at load time.

An adapter is called as ``adapter(context, event)`` by every transport, whatever the signature, and
returns what the handler's reply is made from (``replies.to_http``). Each adapter declares the triggers
it can serve; ``check_triggers`` refuses at start-up a pair that makes no sense.

=============  =====================================  ======================  ===================
signature      the function                           triggers                returns
=============  =====================================  ======================  ===================
funcd          ``handler(context, event)``            http, pubsub, binding   the reply / the ack
batch          ``handler(context, events)``, @batch   pubsub, binding         outcomes per event
http           ``f(request)`` (Flask), Google         http                    a Flask response
cloudevent     ``f(cloud_event)``, Google             http, pubsub, binding   ignored ("OK")
typed          ``f(obj) -> obj``, Google              http, pubsub, binding   JSON of the result
event          ``f(data, context)``, Google legacy    http, pubsub, binding   ignored ("OK")
openfunction   ``f(context: UserContext)`` or         http, pubsub, binding   the reply / the ack
               ``f(context, data)``, OpenFunction
=============  =====================================  ======================  ===================
"""

from __future__ import annotations

import inspect
import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from .decorators import TYPED_INPUT_ATTR
from .errors import BadCloudEvent, EventDataError
from .event import TRIGGER_KINDS, Event, TriggerKind

if TYPE_CHECKING:
    from .runtime_context import RuntimeContext

SignatureType = Literal["funcd", "batch", "http", "cloudevent", "typed", "event", "openfunction"]
SIGNATURE_TYPES: tuple[SignatureType, ...] = (
    "funcd",
    "batch",
    "http",
    "cloudevent",
    "typed",
    "event",
    "openfunction",
)
ALL_TRIGGERS: frozenset[TriggerKind] = frozenset(TRIGGER_KINDS)


def is_coroutine_function(func: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - async callable objects
    )


class Adapter:
    """Calls a user's function for one event. Subclasses define one signature each."""

    signature: ClassVar[SignatureType]
    triggers: ClassVar[frozenset[TriggerKind]] = ALL_TRIGGERS
    parameters: ClassVar[str]
    """How the function's parameters read, for messages: ``(context, event)``."""
    takes_batch: ClassVar[bool] = False
    """Whether the invoker calls ``call_batch(context, events)`` with a whole bulk instead."""
    wants_cloudevent: ClassVar[bool] = True
    """Whether an HTTP request carrying a CloudEvent is parsed as one before the call."""

    def __init__(self, func: Callable[..., Any], flask_app: Any = None) -> None:
        self.func = func
        self.flask_app = flask_app
        self.is_async = is_coroutine_function(func)
        """True when the function is ``async def``: the invoker runs the call on its event loop."""

    def __call__(self, context: RuntimeContext, event: Event) -> Any:
        raise NotImplementedError

    def call_batch(self, context: RuntimeContext, events: list[Event]) -> Any:
        raise NotImplementedError

    def in_flask(self, event: Event, call: Callable[[], Any]) -> Any:
        """Run ``call`` inside the function's Flask request context when it has a Flask app and the
        event is an HTTP request, so that ``flask.request``, ``current_app`` and ``@errorhandler`` work."""
        app = self.flask_app
        if app is None or event.environ is None:
            return call()
        with app.request_context(flask_environ(event)):
            try:
                return call()
            except Exception as exc:
                return app.handle_user_exception(exc)  # a registered error handler's response, or raises


def flask_environ(event: Event) -> dict[str, Any]:
    """The request's WSGI environ with the body (already read by the HTTP app) put back."""
    environ = dict(event.environ or {})
    environ["wsgi.input"] = io.BytesIO(event.body)
    environ["CONTENT_LENGTH"] = str(len(event.body))
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    return environ


class FuncdAdapter(Adapter):
    signature = "funcd"
    parameters = "(context, event)"

    def __call__(self, context: RuntimeContext, event: Event) -> Any:
        return self.func(context, event)


class BatchAdapter(Adapter):
    """``@batch``: ``handler(context, events)``, a whole bulk in one call (``batching.py``)."""

    signature = "batch"
    triggers = frozenset({"pubsub", "binding"})
    parameters = "(context, events)"
    takes_batch = True

    def __call__(self, context: RuntimeContext, event: Event) -> Any:
        return self.func(context, [event])

    def call_batch(self, context: RuntimeContext, events: list[Event]) -> Any:
        return self.func(context, events)


class HttpAdapter(Adapter):
    """Google's ``@http``: a Flask view for every path and method."""

    signature = "http"
    triggers = frozenset({"http"})
    parameters = "(request)"
    wants_cloudevent = False

    def __call__(self, context: RuntimeContext, event: Event) -> Any:
        app = self.flask_app
        with app.request_context(flask_environ(event)):
            return app.full_dispatch_request()


def to_cloudevent(event: Event) -> Any:
    """The event as a ``cloudevents.http.CloudEvent``: HTTP CloudEvents and Dapr pub/sub events as they
    are, input bindings with ``source`` = the binding and ``type`` = ``dev.funcd.binding``."""
    from cloudevents.http import CloudEvent

    if event.trigger.kind == "http" and not event.is_cloudevent:
        raise BadCloudEvent(
            "expected a CloudEvent (ce-* headers or application/cloudevents+json), got a plain HTTP request"
        )
    if event.trigger.kind == "binding":
        attributes: dict[str, Any] = {"id": event.id, "source": event.binding, "type": "dev.funcd.binding"}
    else:
        attributes = {
            **{k: v for k, v in event.extensions.items() if isinstance(v, (str, int, bool))},
            "id": event.id,
            "source": event.source or f"{event.pubsub_name}/{event.topic}",
            "type": event.type or "com.dapr.event.sent",
            "specversion": event.specversion or "1.0",
        }
        for key, value in (("subject", event.subject), ("time", event.time)):
            if value:
                attributes[key] = value
    if event.content_type:
        attributes["datacontenttype"] = event.content_type
    return CloudEvent(attributes, event.data)


class CloudEventAdapter(Adapter):
    """Google's ``@cloud_event``: ``f(cloud_event)``; the reply is ``OK``."""

    signature = "cloudevent"
    parameters = "(cloud_event)"

    def __call__(self, context: RuntimeContext, event: Event) -> Any:
        ce = to_cloudevent(event)
        if self.is_async:
            return _ok_after(self.func(ce))
        return self.in_flask(event, lambda: _ok(self.func, ce))


class BackgroundContext:
    """The ``context`` of a Google legacy background function."""

    def __init__(
        self, eventId: str = "", timestamp: str = "", eventType: str = "", resource: Any = "", **_: Any
    ) -> None:
        self.event_id = eventId
        self.timestamp = timestamp
        self.event_type = eventType
        self.resource = resource

    def __repr__(self) -> str:
        return (
            f"{{event_id: {self.event_id}, timestamp: {self.timestamp}, "
            f"event_type: {self.event_type}, resource: {self.resource}}}"
        )


def _kind(value: Any) -> str:
    return "no body" if value is None else type(value).__name__


def background_args(event: Event) -> tuple[Any, BackgroundContext]:
    """(data, context) for a legacy background function, from an event of any trigger."""
    if event.is_cloudevent or event.trigger.kind != "http":
        structured = (event.environ or {}).get("CONTENT_TYPE", "").startswith("application/cloudevents")
        # A binary CloudEvent's data is the raw body, as in Google's framework.
        data = event.body if event.trigger.kind == "http" and not structured else event.data
        return data, BackgroundContext(event.id, event.time, event.type, event.source or event.binding)
    body = event.json() if event.body else None
    if not isinstance(body, dict):
        raise EventDataError(
            'expected a background event: a JSON object {"data": ..., "context": {...}} or with '
            f"eventId/timestamp/eventType/resource, got {_kind(body)}"
        )
    ctx = body.get("context")
    if not isinstance(ctx, dict):
        ctx = {k: body.get(k, "") for k in ("eventId", "timestamp", "eventType", "resource")}
    return body.get("data", ""), BackgroundContext(**ctx)


class BackgroundAdapter(Adapter):
    """Google's legacy background functions, ``f(data, context)`` (``--signature-type event``)."""

    signature = "event"
    parameters = "(data, context)"

    def __call__(self, context: RuntimeContext, event: Event) -> Any:
        data, ctx = background_args(event)
        if self.is_async:
            return _ok_after(self.func(data, ctx))
        return self.in_flask(event, lambda: _ok(self.func, data, ctx))


def _ok(func: Callable[..., Any], *args: Any) -> str:
    """Call a function whose return value Google's framework ignores; the reply is ``OK``."""
    func(*args)
    return "OK"


async def _ok_after(awaitable: Any) -> str:
    await awaitable
    return "OK"


_BASIC_TYPES = (str, int, float, bool, dict, list)


class TypedAdapter(Adapter):
    """Google's ``@typed``: the JSON body becomes the input type; the result is sent as JSON."""

    signature = "typed"
    parameters = "(obj)"

    def __init__(self, func: Callable[..., Any], flask_app: Any = None) -> None:
        super().__init__(func, flask_app)
        self.input_type = getattr(func, TYPED_INPUT_ATTR, None) or _first_annotation(func)

    def _input(self, event: Event) -> Any:
        data = event.json() if event.trigger.kind == "http" else event.data
        input_type = self.input_type
        if input_type is None or input_type is Any:
            return data
        try:
            if hasattr(input_type, "from_dict"):
                return input_type.from_dict(data)
            if input_type in _BASIC_TYPES:
                if not isinstance(data, input_type):
                    raise TypeError(f"expected {input_type.__name__}, got {type(data).__name__}")
                return data
            return input_type(**data) if isinstance(data, dict) else input_type(data)
        except Exception as exc:
            raise EventDataError(
                f"the body does not convert to {getattr(input_type, '__name__', input_type)}: "
                f"{type(exc).__name__}: {exc}"
            ) from None

    def __call__(self, context: RuntimeContext, event: Event) -> Any:
        value = self._input(event)
        if self.is_async:
            return _typed_result_after(self.func(value))
        return self.in_flask(event, lambda: typed_result(self.func(value)))


def typed_result(result: Any) -> Any:
    """A typed function's result as something JSON can send."""
    if hasattr(result, "to_dict"):
        return result.to_dict()
    if result is None:
        return ""  # an empty 200, as in Google's framework
    if isinstance(result, (*_BASIC_TYPES, tuple)):
        return result
    raise TypeError(f"a @typed function must return a basic type or an object with to_dict(), got {result!r}")


async def _typed_result_after(awaitable: Any) -> Any:
    return typed_result(await awaitable)


def _first_annotation(func: Callable[..., Any]) -> Any:
    try:
        params = list(inspect.signature(func, eval_str=True).parameters.values())
    except (TypeError, ValueError, NameError):
        return None
    if params and params[0].annotation is not inspect.Parameter.empty:
        return params[0].annotation
    return None


class OpenFunctionAdapter(Adapter):
    """OpenFunction's Python styles: ``f(context: UserContext)`` for HTTP and ``f(context, data)`` for
    async inputs; ``context.send(data, "output")`` reaches the outputs in both."""

    signature = "openfunction"
    parameters = "(context) or (context, data)"

    def __init__(self, func: Callable[..., Any], flask_app: Any = None) -> None:
        super().__init__(func, flask_app)
        self.takes_data = len(positional_parameters(func)) >= 2
        """``(context, data)``: the first framework's async style, ``data`` the raw payload bytes."""

    def __call__(self, context: RuntimeContext, event: Event) -> Any:
        if self.takes_data:
            return self.func(context, event.body)
        from .context.user_context import UserContext

        user_context = UserContext(context, event)
        if self.flask_app is None or event.environ is None:
            return self.func(user_context)
        import flask

        return self.in_flask(event, lambda: flask.make_response(self.func(user_context)))


ADAPTERS: dict[SignatureType, type[Adapter]] = {
    a.signature: a
    for a in (
        FuncdAdapter,
        BatchAdapter,
        HttpAdapter,
        CloudEventAdapter,
        TypedAdapter,
        BackgroundAdapter,
        OpenFunctionAdapter,
    )
}

NEEDS_FLASK: frozenset[SignatureType] = frozenset({"http", "openfunction"})


def positional_parameters(func: Callable[..., Any]) -> list[inspect.Parameter]:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def accepted_signatures() -> str:
    return "; ".join(f"{name}{a.parameters}" for name, a in ADAPTERS.items())


def describe(func: Callable[..., Any]) -> str:
    """``name(a, b)`` as the function declares it."""
    name = getattr(func, "__qualname__", None) or type(func).__name__
    try:
        return f"{name}{inspect.signature(func)}"
    except (TypeError, ValueError):
        return f"{name}(...)"
