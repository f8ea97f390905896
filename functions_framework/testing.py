"""Call a function in a unit test, with no server, through the real WSGI app and delivery router.

from functions_framework import testing

result = testing.call("path/to/function", data={"name": "Ada"})
assert result.status == 200 and result.json == {"message": "Hello, Ada!"}
assert result.sent == [("sink", {"seen": ...}, {})]

HTTP events go through the same WSGI app the server runs (status, headers and body are the server's);
pub/sub and binding events go through the same router (``result.ack``). Outputs and state are recorded
in memory and refuse what Dapr would refuse.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import OutputError
from .event import HTTP_TRIGGER, Event, Trigger
from .invocation import Invocation, Invoker, Outcome
from .loader import LoadedFunction, check_arity, find_source, load_function, pick_signature
from .model import FunctionContext, parse_context_text
from .outputs import encode, encode_state
from .plugins import Hooks
from .replies import Ack
from .runtime.delivery import Router
from .runtime.http import HttpApp
from .runtime.lifecycle import Lifecycle
from .runtime_context import RuntimeContext
from .settings import Settings
from .signatures import ADAPTERS


class MemoryState:
    """A state store kept in memory, with the methods and the encoding of the Dapr-backed one."""

    def __init__(self, name: str = "state") -> None:
        self.name = name
        self.items: dict[str, bytes] = {}

    def _key(self, key: Any, op: str) -> str:
        if not isinstance(key, str) or not key or "||" in key:
            raise OutputError(
                f"state({self.name!r}).{op}: expected a non-empty key without '||' (Dapr refuses it), "
                f"got {key!r}"
            )
        return key

    def _encode(self, value: Any, op: str) -> bytes:
        return encode_state(value, f"state({self.name!r}).{op}")

    def get(self, key: str, default: Any = None) -> Any:
        data = self.items.get(self._key(key, "get"))
        if not data:
            return default
        try:
            return json.loads(data)
        except ValueError:
            return data

    def save(self, key: str, value: Any) -> None:
        self.items[self._key(key, "save")] = self._encode(value, f"save({key!r})")

    def delete(self, key: str) -> None:
        self.items.pop(self._key(key, "delete"), None)

    def transaction(self, upserts: Mapping[str, Any] | None = None, deletes: list[str] | None = None) -> None:
        staged = {
            self._key(k, "transaction"): self._encode(v, "transaction") for k, v in (upserts or {}).items()
        }
        removed = [self._key(k, "transaction") for k in deletes or []]
        self.items.update(staged)
        for key in removed:
            self.items.pop(key, None)


class RecordingOutputs:
    """Records ``context.send`` calls instead of calling Dapr; refuses what ``DaprOutputs`` refuses."""

    def __init__(self, function: FunctionContext | None = None) -> None:
        self.function = function or FunctionContext()
        self.sent: list[tuple[str, Any, dict[str, str]]] = []
        self.states: dict[str, MemoryState] = {}

    def send(
        self,
        data: Any,
        output: str | None = None,
        metadata: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> list[Any]:
        names = list(self.function.outputs)
        where = f"send(output={output!r})" if output is not None else "send()"
        if output is None:
            if not names:
                raise OutputError("send() with no output name: the context defines no outputs")
            targets = names
        elif output not in names:
            if not names:
                raise OutputError(f"{where}: the context defines no outputs")
            raise OutputError(f"{where}: expected one of {', '.join(names)}")
        else:
            targets = [output]
        encode(data, where)  # data Dapr could not be sent is refused here too
        for name in targets:
            self.sent.append((name, data, dict(metadata or {})))
        return [None for _ in targets]

    def state(self, name: str) -> MemoryState:
        states = self.function.states
        if name not in states:
            if not states:
                raise OutputError(f"state({name!r}): the context defines no state stores")
            raise OutputError(f"state({name!r}): expected one of {', '.join(states)}")
        return self.states.setdefault(name, MemoryState(name))

    def close(self) -> None:
        pass


@dataclass
class Result:
    """What one call did."""

    outcome: Outcome
    """How the call ended (status, result, error, reply)."""
    status: int
    """The HTTP status answered (0 for a pub/sub or binding delivery)."""
    headers: dict[str, str]
    """Response headers (HTTP)."""
    body: bytes
    """Response body (HTTP)."""
    ack: Ack | None = None
    """The Dapr ack of a pub/sub or binding delivery (SUCCESS, RETRY or DROP)."""
    sent: list[tuple[str, Any, dict[str, str]]] = field(default_factory=list)
    """(output, data, metadata) for every ``context.send``."""
    context: RuntimeContext | None = None
    """The handler's context, to inspect state or send more."""

    @property
    def value(self) -> Any:
        """What the handler returned."""
        return self.outcome.result

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def text(self) -> str:
        return self.body.decode()


def make_event(
    data: Any = None,
    *,
    body: bytes | None = None,
    content_type: str | None = None,
    headers: Mapping[str, str] | None = None,
    method: str = "POST",
    path: str = "/",
    query_string: str = "",
    trigger: Trigger = HTTP_TRIGGER,
    **attributes: Any,
) -> Event:
    """An Event as a runtime would build it. ``data`` is JSON-encoded unless it is bytes or str."""
    if body is None:
        if data is None:
            body = b""
        elif isinstance(data, bytes):
            body, content_type = data, content_type or "application/octet-stream"
        elif isinstance(data, str):
            body, content_type = data.encode(), content_type or "text/plain; charset=utf-8"
        else:
            body, content_type = json.dumps(data).encode(), content_type or "application/json"
    hdrs = {k.lower(): v for k, v in (headers or {}).items()}
    if content_type:
        hdrs.setdefault("content-type", content_type)
    return Event(
        body=body,
        content_type=content_type or "",
        headers=hdrs,
        method=method,
        path=path,
        query_string=query_string,
        trigger=trigger,
        **attributes,
    )


def load(
    function: str | Path | Callable[..., Any], target: str = "handler", signature: str | None = None
) -> tuple[LoadedFunction, FunctionContext]:
    """Load a function from a path (with its function.yaml), or wrap a callable, as the server would."""
    if callable(function):
        kind = pick_signature(function, signature)
        check_arity(function, kind)
        flask_app = None
        if kind == "http":
            from .loader import _register_flask, make_flask_app

            flask_app = make_flask_app(target, Path.cwd())
            _register_flask(flask_app, function, kind)
        adapter = ADAPTERS[kind](function, flask_app)
        return LoadedFunction(function, adapter, None, Path("<callable>"), target), FunctionContext()
    source = find_source(function)
    ctx = (
        parse_context_text(source.context_file.read_text(), str(source.context_file))
        if source.context_file
        else FunctionContext()
    )
    return load_function(source.main, target, signature), ctx


class _Capture:
    """A post hook that keeps the calls' outcomes for the Result."""

    name = "testing"

    def __init__(self) -> None:
        self.outcome: Outcome | None = None
        self.outcomes: list[Outcome] = []

    def pre_hook(self, invocation: Invocation) -> None:
        pass

    def post_hook(self, invocation: Invocation, outcome: Outcome) -> None:
        self.outcome = outcome
        self.outcomes.append(outcome)


@dataclass
class BulkResult:
    """What one bulk delivery did."""

    acks: list[Ack]
    """One Dapr ack per event, in order (SUCCESS, RETRY or DROP)."""
    outcomes: list[Outcome]
    """The calls' outcomes: one for a ``@batch`` handler (per-event ones in its ``entries``), else
    one per event that reached the handler (in completion order)."""
    sent: list[tuple[str, Any, dict[str, str]]] = field(default_factory=list)
    """(output, data, metadata) for every ``context.send``."""
    context: RuntimeContext | None = None
    """The handler's context."""


def call_bulk(
    function: str | Path | Callable[..., Any],
    events: list[Event],
    *,
    context: FunctionContext | None = None,
    target: str = "handler",
    signature: str | None = None,
    init: bool = True,
    debug: bool = False,
) -> BulkResult:
    """Deliver ``events`` (pub/sub or binding events of one input) as one Dapr bulk, as the server
    would: a ``@batch`` handler gets them in one call, any other handler one call each."""
    if not events:
        raise ValueError("call_bulk: expected at least one event, got none")
    loaded, file_context = load(function, target, signature)
    fctx = _with_input(context or file_context, events[0])
    outputs, rctx, capture, invoker = _invoker(loaded, fctx, init)
    router = Router(fctx, invoker, Settings(debug=debug, workers=1), Lifecycle())
    comp = fctx.inputs[events[0].trigger.name]
    acks = router.deliver_bulk(comp, events, f"on {comp.component_name}/{comp.topic}")
    return BulkResult(acks, capture.outcomes, outputs.sent, rctx)


def _environ(event: Event) -> dict[str, Any]:
    from werkzeug.test import EnvironBuilder

    headers = {k: v for k, v in event.headers.items() if k not in ("content-type", "content-length")}
    builder = EnvironBuilder(
        path=event.path or "/",
        method=event.method or "POST",
        headers=list(headers.items()),
        data=event.body,
        content_type=event.content_type or None,
        query_string=event.query_string or None,
    )
    try:
        return builder.get_environ()
    finally:
        builder.close()


def call(
    function: str | Path | Callable[..., Any],
    event: Event | None = None,
    *,
    data: Any = None,
    context: FunctionContext | None = None,
    target: str = "handler",
    signature: str | None = None,
    init: bool = True,
    debug: bool = False,
    **event_args: Any,
) -> Result:
    """Call a function once, as the server would, and return what happened.

    ``function`` is a handler, a .py file or a function folder. ``init_context`` runs first when the
    module has one (``init=False`` skips it). An HTTP event goes through the server's WSGI app; a
    pub/sub or binding event (``trigger=Trigger("pubsub", input_name)``) through its delivery router.
    """
    loaded, file_context = load(function, target, signature)
    fctx = context or file_context
    outputs, rctx, capture, invoker = _invoker(loaded, fctx, init)
    settings = Settings(debug=debug, workers=1)
    ev = event or make_event(data, **event_args)
    if ev.trigger.kind == "http":
        app = HttpApp(invoker, settings, Lifecycle())
        reply: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            reply["status"], reply["headers"] = int(status.split(" ", 1)[0]), headers

        chunks = app(_environ(ev), start_response)
        body = b"".join(chunks)
        if hasattr(chunks, "close"):
            chunks.close()
        outcome = capture.outcome or Outcome.refused(reply["status"])
        return Result(outcome, reply["status"], dict(reply["headers"]), body, None, outputs.sent, rctx)
    router = Router(_with_input(fctx, ev), invoker, settings, Lifecycle())
    answer = router.deliver(ev, lambda: f"event {ev.id!r}")
    outcome = capture.outcome or Outcome.refused(answer)
    return Result(outcome, 0, {}, b"", answer, outputs.sent, rctx)


def _invoker(
    loaded: LoadedFunction, fctx: FunctionContext, init: bool
) -> tuple[RecordingOutputs, RuntimeContext, _Capture, Invoker]:
    """Outputs that record, the handler's context (``init_context`` run when ``init``), and an
    invoker whose outcomes are captured."""
    outputs = RecordingOutputs(fctx)
    rctx = RuntimeContext(fctx, outputs)
    if init and loaded.init_context is not None:
        from .runtime.serve import run_init_context

        run_init_context(loaded, rctx)
    capture = _Capture()
    invoker = Invoker(loaded.adapter, rctx, Hooks(post=(capture,), plugins=(capture,)))
    return outputs, rctx, capture, invoker


def _with_input(ctx: FunctionContext, event: Event) -> FunctionContext:
    """The context, with an input for the event's trigger when the test's context lacks one."""
    from dataclasses import replace

    from .model import Component

    name = event.trigger.name
    if name in ctx.inputs:
        return ctx
    if event.trigger.kind == "pubsub":
        comp = Component(name, event.pubsub_name or name, "pubsub.in-memory", topic=event.topic or name)
    else:
        comp = Component(name, event.binding or name, "bindings.test")
    return replace(ctx, inputs={**ctx.inputs, name: comp})
