"""Call a handler in a unit test, with no server, and see what it returned and sent.

from functions_framework import testing

result = testing.call("path/to/function", data={"name": "Ada"})
assert result.status == 200 and result.json == {"message": "Hello, Ada!"}
assert result.sent == [("sink", {"seen": ...}, {})]
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .decorators import SIGNATURE_ATTR
from .errors import OutputError
from .event import HTTP_TRIGGER, Event, Trigger
from .invocation import Invoker, Outcome, Status, new_execution_id
from .loader import LoadedFunction, _guess_signature, find_source, load_function
from .model import FunctionContext, parse_context_text
from .response import to_http
from .runtime.http import failure_status
from .runtime_context import RuntimeContext


class MemoryState:
    """A state store kept in memory, with the same methods as the Dapr-backed one."""

    def __init__(self) -> None:
        self.items: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.items.get(key, default)

    def save(self, key: str, value: Any) -> None:
        self.items[key] = value

    def delete(self, key: str) -> None:
        self.items.pop(key, None)

    def transaction(self, upserts: Mapping[str, Any] | None = None, deletes: list[str] | None = None) -> None:
        self.items.update(upserts or {})
        for key in deletes or []:
            self.items.pop(key, None)


class RecordingOutputs:
    """Records ``context.send`` calls instead of calling Dapr."""

    def __init__(self, function: FunctionContext | None = None) -> None:
        self.function = function
        self.sent: list[tuple[str, Any, dict[str, str]]] = []
        self.states: dict[str, MemoryState] = {}

    def send(self, data: Any, output: str | None, metadata: dict[str, str] | None) -> list[Any]:
        names = list(self.function.outputs) if self.function and self.function.outputs else None
        if output is None:
            if not names:
                raise OutputError("send() with no output name: the context defines no outputs")
            targets = names
        else:
            if names is not None and output not in names:
                raise OutputError(f"send(output={output!r}): expected one of {', '.join(names)}")
            targets = [output]
        for name in targets:
            self.sent.append((name, data, dict(metadata or {})))
        return [None for _ in targets]

    def state(self, name: str) -> MemoryState:
        if self.function and self.function.states and name not in self.function.states:
            raise OutputError(f"state({name!r}): expected one of {', '.join(self.function.states)}")
        return self.states.setdefault(name, MemoryState())

    def close(self) -> None:
        pass


@dataclass
class Result:
    """What one call did."""

    outcome: Outcome
    """How the call ended (status, result, error)."""
    status: int
    """The HTTP status it would have answered."""
    headers: dict[str, str]
    body: bytes
    sent: list[tuple[str, Any, dict[str, str]]] = field(default_factory=list)
    """(output, data, metadata) for every ``context.send``."""
    context: RuntimeContext | None = None

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
    function: str | Path | Callable[..., Any], target: str = "handler"
) -> tuple[LoadedFunction, FunctionContext]:
    """Load a function from a path (with its function.yaml) or wrap a callable."""
    if callable(function):
        signature = getattr(function, SIGNATURE_ATTR, None) or _guess_signature(function)
        return LoadedFunction(function, signature, None, Path("<callable>"), target), FunctionContext()
    source = find_source(function)
    ctx = (
        parse_context_text(source.context_file.read_text(), str(source.context_file))
        if source.context_file
        else FunctionContext()
    )
    return load_function(source.main, target), ctx


def call(
    function: str | Path | Callable[..., Any],
    event: Event | None = None,
    *,
    data: Any = None,
    context: FunctionContext | None = None,
    target: str = "handler",
    init: bool = True,
    **event_args: Any,
) -> Result:
    """Call a handler once, as the runtime would, and return what happened.

    ``function`` is a handler, a .py file or a function folder. ``init_context`` runs first when
    the module has one (``init=False`` skips it). Outputs are recorded in ``Result.sent``.
    """
    loaded, file_context = load(function, target)
    fctx = context or file_context
    outputs = RecordingOutputs(fctx)
    rctx = RuntimeContext(fctx, outputs)
    if init and loaded.init_context is not None:
        from .runtime.serve import run_init_context

        run_init_context(loaded, rctx)
    ev = event or make_event(data, **event_args)
    invoker = Invoker(loaded.handler, rctx)
    call_override = _signature_call(loaded, ev)
    _, outcome = invoker.invoke(ev, new_execution_id(), call=call_override)
    if outcome.status is Status.SUCCESS:
        status, header_list, body = _http_result(loaded, outcome.result)
    else:
        status, message = failure_status(outcome, debug=True)
        header_list, body = [("Content-Type", "application/json")], json.dumps({"error": message}).encode()
    return Result(outcome, status, dict(header_list), body, outputs.sent, rctx)


def _signature_call(loaded: LoadedFunction, ev: Event) -> Callable[[], Any] | None:
    if loaded.signature == "http":
        import flask

        app = flask.Flask("funcd.testing")

        def run_http() -> Any:
            with app.test_request_context(
                ev.path,
                method=ev.method or "POST",
                data=ev.body,
                headers=dict(ev.headers),
                query_string=ev.query_string,
            ):
                return flask.make_response(loaded.handler(flask.request))

        return run_http
    if loaded.signature == "cloudevent":
        from cloudevents.http import CloudEvent

        attrs = {"type": ev.type or "funcd.test", "source": ev.source or "funcd/testing", "id": ev.id or "1"}
        ce = CloudEvent(attrs, ev.data)
        return lambda: loaded.handler(ce)
    return None


def _http_result(loaded: LoadedFunction, result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    if loaded.signature == "http":
        return result.status_code, list(result.headers.items()), result.get_data()
    if loaded.signature == "cloudevent":
        return 200, [], b"OK"
    return to_http(result)
